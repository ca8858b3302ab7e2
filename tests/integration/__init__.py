"""Tests that start real Sisy processes (heartbeat, workers, daphne) on both stacks."""
