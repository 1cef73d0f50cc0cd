"""The GraphQL API: Strawberry types mirroring the domain, thin fields that call the use cases."""
