"""The consumer side: reading topics (``kafkalog tail``) and probing a cluster
(``kafkalog check``). With the transports, the only code that imports a Kafka client; the
handler and the pipeline never import it."""
