"""Group mode: this agent as one peer among others on a Kafka group."""
