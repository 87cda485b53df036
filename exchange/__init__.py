"""Exchange with other systems: HL7 v2 ingest (``exchange/hl7/``), FHIR and packages (DESIGN.md §9)."""
