"""The file agent: ``kafkalog ship`` tails log files into Kafka through the delivery pipeline."""
