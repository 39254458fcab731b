"""GET /api/v1/wallets, /api/v1/transactions and /api/v1/transactions/{id} (contract 6)."""

from octopus_cards.http.responses import json_answer, paginated
from octopus_cards.models import Transaction, Wallet, db


@db.connection_context()
def list_wallets(token_info, page=1, limit=50, currency=None):
    items, total = Wallet.page_for(token_info["client_id"], currency, page, limit)
    return paginated(items, page, limit, total)


@db.connection_context()
def list_transactions(token_info, page=1, limit=50, wallet_id=None):
    items, total = Transaction.page_for(token_info["client_id"], wallet_id, page, limit)
    return paginated(items, page, limit, total)


@db.connection_context()
def get_transaction(token_info, transaction_id):
    return json_answer(Transaction.one_for(token_info["client_id"], transaction_id))
