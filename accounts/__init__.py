"""Users, API keys, wallets, the double-entry ledger and proof of liabilities."""
