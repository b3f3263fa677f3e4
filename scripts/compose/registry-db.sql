-- Run by the postgres image on its first start (docker-entrypoint-initdb.d):
-- the schema registry keeps its schemas in a database of its own.
CREATE DATABASE registry OWNER kms;
