"""The partner API (read-only FHIR R4 REST): SMART Backend Services auth, metadata, and the
helpers the resource endpoints use (bearer tokens, scopes, rate limit, who may see which patient)."""
