"""De-identified research datasets (DESIGN.md §10, issue 13).

The engine, pure Python over values handed to it: Safe Harbor and Limited Data Set transforms
(``safe_harbor``), the restricted ZIP3 list (``zip3``), keyed pseudonyms and date shifts
(``pseudonyms``) and k-anonymity with generalisation and suppression (``kanon``). The workflow:
requests and datasets (``models``), submitting and deciding (``services``), and building an approved
request through the audited read (``build``, ``manage.py deid_export``); docs/research/workflow.md.
"""
