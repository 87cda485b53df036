"""Partner organisations of the read-only FHIR API: who they are, their keys, what they may see."""
