"""`make bench`: casegate's throughput, latency and memory, as ratios to raw Kafka."""
