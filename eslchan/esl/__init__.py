"""The Event Socket layer: wire framing, event decoding, command building and links."""
