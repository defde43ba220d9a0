"""The run directory: its one owner. File names and schema versions (`names`), the record
codec and the writers (`runlog`), the steps file (`ledger`), snapshots and timelines
(`snapshot`), who owns a live run (`liveness`), the one write a reader may make (`finalize`),
and bounded reads of a directory that may be damaged or forged (`untrusted`). Every other
module reads and writes a run directory through these."""
