-- The projections moved to a file of their own beside the ledger
-- (`<ledger>-projections`, schema in `projections.sql`): folding no longer
-- competes with appends for the ledger's write lock, and a rebuild writes a
-- fresh file instead of deleting rows. They are disposable, so nothing is
-- copied: the new file is folded from the ledger at the next start.
DROP TABLE IF EXISTS main.invitations;
DROP TABLE IF EXISTS main.projection_checkpoint;
