"""SQL lives here: store modules with synchronous ``_txn`` functions, and the migrations."""
