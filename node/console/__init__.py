"""The web console (`scfchain console`): a local web app that reads the chain through the gRPC
API as one member, with signed reads, so it shows exactly what that member may see.

- `source`: the `ChainSource` protocol and its gRPC implementation (the only network code);
- `follower`, `history`: the block stream, the live feed and the event index for histories;
- `directory`: member names and roles from the public member directory;
- `chain_pages`, `record_pages`, `approvals`: what each page shows, as JSON-ready documents;
- `app`: the Starlette app (pages, /api/, /events, static assets); `present`: Jinja filters;
- `command`: the `scfchain console` subcommand.

docs/console.md describes the pages and the API.
"""
