package evidence

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/leaseguard/leaseguard/schemas"
)

// TypePolicy is the type of the evidence of a change of the enforcement
// policy (scope and rule modes): who changed it, why, from what to what.
const TypePolicy = "io.leaseguard.policy.v1"

// OCSF Entity Management (IAM): the policy is the managed entity.
const (
	ocsfClassEntityManagement = 3004
	ocsfEntityActivityUpdate  = 3
	policyEntityUID           = "leaseguard-enforcement-policy"
	// The managed entity is of type Policy (managed_entity.type_id 5).
	policyEntityType   = "Policy"
	policyEntityTypeID = 5
)

// policyEvent is an OCSF Entity Management event: activity Create for the
// configured starting point, Update for every later change. The actor is
// who changed it and the comment why. entity is the policy acted on (the
// one before an Update; the one created by a Create), entity_result the
// policy after.
type policyEvent struct {
	ocsfClass
	ocsfStatus
	ocsfOccurrence
	Message      string               `json:"message"`
	Comment      string               `json:"comment"`
	Metadata     ocsfMetadata         `json:"metadata"`
	Actor        ocsfActor            `json:"actor"`
	Observables  []ocsfObservable     `json:"observables"`
	Entity       ocsfManagedEntity    `json:"entity"`
	EntityResult ocsfManagedEntity    `json:"entity_result"`
	Unmapped     schemas.PolicyChange `json:"unmapped"`
}

type ocsfManagedEntity struct {
	Name    string              `json:"name"`
	UID     string              `json:"uid"`
	Type    string              `json:"type"`
	TypeID  int                 `json:"type_id"`
	Version string              `json:"version"`
	Data    schemas.PolicyState `json:"data"`
}

func policyEntity(s schemas.PolicyState) ocsfManagedEntity {
	return ocsfManagedEntity{Name: "enforcement policy", UID: policyEntityUID, Type: policyEntityType,
		TypeID: policyEntityTypeID, Version: strconv.FormatInt(s.Version, 10), Data: s}
}

// Policy builds the evidence of a policy change. Its id is derived from
// the version and its time, so a retry builds the same event.
func (b Builder) Policy(c schemas.PolicyChange) (Event, error) {
	if err := b.validate(); err != nil {
		return Event{}, err
	}
	if err := checkPolicyChange(c); err != nil {
		return Event{}, err
	}
	activity, activityName := ocsfActivityCreate, "Create"
	if c.Previous != nil {
		activity, activityName = ocsfEntityActivityUpdate, "Update"
	}
	id := eventID("policy", strconv.FormatInt(c.Version, 10), rfc3339(c.ChangedAt))
	after := policyEntity(schemas.PolicyState{Version: c.Version, Scope: c.Scope, Modes: c.Modes})
	data := policyEvent{
		ocsfClass: classify(ocsfCategoryIAM, "Identity & Access Management", ocsfClassEntityManagement,
			"Entity Management", activity, activityName, 1),
		// status_code is the kind of change; status_detail why.
		ocsfStatus:     ocsfStatus{StatusID: ocsfStatusSuccess, Status: "Success", StatusCode: string(c.Kind), StatusDetail: c.Reason},
		ocsfOccurrence: occurrence(c.ChangedAt),
		Message:        policyMessage(c), Comment: c.Reason,
		Metadata: b.metadata(id, ""),
		// The configuration is leaseguard's own starting point (System);
		// every later change is a person's.
		Actor:        ocsfActor{User: person(c.Actor, c.Kind == schemas.PolicyConfiguration), AppName: productName},
		Observables:  userNames("actor.user.name", c.Actor),
		Entity:       after,
		EntityResult: after,
		Unmapped:     c,
	}
	if c.Previous != nil {
		data.Entity = policyEntity(*c.Previous)
	}
	return b.event(TypePolicy, id, "policy/"+strconv.FormatInt(c.Version, 10), c.ChangedAt, data)
}

func checkPolicyChange(c schemas.PolicyChange) error {
	switch {
	case c.Version < 1:
		return fmt.Errorf("%w: a policy change needs its version", ErrInvalidInput)
	case strings.TrimSpace(c.Actor) == "" || strings.TrimSpace(c.Reason) == "":
		return fmt.Errorf("%w: a policy change needs who made it and why", ErrInvalidInput)
	case c.ChangedAt.IsZero():
		return fmt.Errorf("%w: a policy change needs its time", ErrInvalidInput)
	}
	switch c.Kind {
	case schemas.PolicyConfiguration, schemas.PolicyExpand, schemas.PolicyRollback:
		return nil
	}
	return fmt.Errorf("%w: policy change kind %q is not configuration, expand or rollback", ErrInvalidInput, c.Kind)
}

func policyMessage(c schemas.PolicyChange) string {
	scope := c.Scope
	if scope == "" {
		scope = "nowhere"
	}
	switch {
	case c.Kind == schemas.PolicyConfiguration:
		return fmt.Sprintf("enforcement policy version %d recorded from the configuration: enforce scope %s", c.Version, scope)
	case c.Kind == schemas.PolicyRollback && c.RestoredConfiguration:
		return fmt.Sprintf("%s rolled the enforcement policy back to the configuration (version %d): enforce scope %s", c.Actor, c.Version, scope)
	case c.Kind == schemas.PolicyRollback:
		return fmt.Sprintf("%s rolled the enforcement policy back to version %d (now version %d): enforce scope %s",
			c.Actor, c.RestoredVersion, c.Version, scope)
	}
	return fmt.Sprintf("%s changed the enforcement policy (version %d): enforce scope %s", c.Actor, c.Version, scope)
}
