"""Model registry: versioned, HMAC-signed model snapshots on a compacted topic."""
