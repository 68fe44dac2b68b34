"""The spill: CRC-framed segment files on local disk that keep the records Kafka could not
take yet, adopted from dead writers and replayed in order (see ``docs/spill-format.md``)."""
