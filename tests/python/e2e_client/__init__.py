"""A VAL-server-side client of the KM-S built from the wire contract and the
schema files alone: Avro single-object encoding (avro_so), access tokens
(tokens) and Kafka request/reply in the manner of Spring's
ReplyingKafkaTemplate (replying). It shares no code with the service or with
the project's other test helpers."""

from .avro_so import AvroSchema, FramingError, SchemaSet
from .replying import (
    CORRELATION_ID,
    REPLY_PARTITION,
    REPLY_TOPIC,
    Reply,
    ReplyingClient,
    create_topic,
    read_whole_topic,
)
from .tokens import DROP, TokenMinter, new_ec_key, private_pem, public_pem, tamper_signature

__all__ = [
    "AvroSchema",
    "FramingError",
    "SchemaSet",
    "CORRELATION_ID",
    "REPLY_PARTITION",
    "REPLY_TOPIC",
    "Reply",
    "ReplyingClient",
    "create_topic",
    "read_whole_topic",
    "DROP",
    "TokenMinter",
    "new_ec_key",
    "private_pem",
    "public_pem",
    "tamper_signature",
]
