//! The config file: one strict schema.
