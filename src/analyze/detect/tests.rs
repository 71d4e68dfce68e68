//! Rule logic on hand-built RPC records.
