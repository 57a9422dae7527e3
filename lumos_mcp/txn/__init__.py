"""Transactions with a write-ahead journal, auto-revert deadlines and crash recovery."""

from lumos_mcp.txn.manager import (
    KnobChange,
    RecoveryReport,
    Restored,
    Transaction,
    TransactionManager,
    TxState,
    change_digest,
)

__all__ = [
    "KnobChange",
    "RecoveryReport",
    "Restored",
    "Transaction",
    "TransactionManager",
    "TxState",
    "change_digest",
]
