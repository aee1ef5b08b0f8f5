"""Dataset packer: sources, shards, object store upload, presigned URLs and verified downloads."""
