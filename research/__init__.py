"""De-identified research datasets (DESIGN.md §10, issue 13).

This first part is the engine only, pure Python over values handed to it: Safe Harbor and Limited
Data Set transforms (``safe_harbor``), the restricted ZIP3 list (``zip3``), keyed pseudonyms and date
shifts (``pseudonyms``) and k-anonymity with generalisation and suppression (``kanon``). The audited
read that feeds it, the request workflow and the exports come later.
"""
