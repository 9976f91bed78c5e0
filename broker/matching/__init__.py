"""Patient reconciliation in one place.

score/     the pure scorer: normalisation, blocking keys, field-by-field comparison, the bands
           (no database, no I/O: tests/test_layering.py holds that line)
search     candidate search over the stored blocking keys, bounded per search
searches   the deferred search of new patients, run by a job after the HL7 ACK
queue      the review queue's entries (proposed, linked automatically, conflicts) and listing
review     what an admin does with an entry: link, dismiss, unmerge
importer   `broker patients import`; scan: `broker patients scan`; commands: their CLI

The exact-identifier side of identity (which patient a message belongs to) is in
broker.store.patients; merge and unmerge are in broker.store.merge.
"""
