-- Owner approval (rule mode "approve"): a finding of a rule in approve mode
-- holds the revocation command enforce would have issued as a pending
-- revocation. An owner approves it (the command then goes to the revoker,
-- same id, same guards) or rejects it; unanswered, it expires. The decision
-- is taken under the row lock with a compare-and-set on state, so two
-- owners deciding at once make one decision.
CREATE TABLE pending_revocations (
    id               text        PRIMARY KEY,  -- the command id enforce would have used
    finding_id       text        NOT NULL,
    rule             text        NOT NULL,
    severity         text        NOT NULL,
    database         text        NOT NULL,
    db_user          text        NOT NULL,
    lease_id         text,
    summary          text        NOT NULL,
    command          jsonb       NOT NULL,     -- as the detector signed it
    state            text        NOT NULL DEFAULT 'pending'
                                 CHECK (state IN ('pending', 'approved', 'rejected', 'expired')),
    requested_at     timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    decided_by       text,
    decided_at       timestamptz,
    decision_comment text,
    approved_command jsonb,                    -- the command sent to the revoker, signed with the approver as actor
    evidence_id      text,                     -- the decision's evidence event
    CHECK ((state = 'pending') = (decided_at IS NULL)),
    CHECK ((state = 'approved') = (approved_command IS NOT NULL))
);
CREATE INDEX pending_revocations_due ON pending_revocations (expires_at) WHERE state = 'pending';
CREATE INDEX pending_revocations_by_state ON pending_revocations (state, requested_at, id);
