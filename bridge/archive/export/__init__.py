"""`switchboard archive export`: records in a standard format, with proof they are complete and untouched.

A bundle is a directory:

    records.jsonl | records.csv | eml/*.eml | rsmf.zip   the records, in the chosen format
    files/<sha256>    attached files of jsonl and csv exports (eml and rsmf hold their own)
    proofs.jsonl      per record: the stored row, its content, its inclusion proof and where it
                      sits in the format files
    checkpoint.json   the signed checkpoint every proof leads to (made just before the export)
    manifest.json     who exported what (filters), how many records, sha256 of every file above
    manifest.sig      the archive key's signature over manifest.json

The export is itself a record in the log, committing to the manifest's sha256.
"""
