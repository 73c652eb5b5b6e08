package bot

import (
	"context"
	"slices"
	"sync"
)

// Access says who may request codes for an instance: any listed user, any
// member of a listed user group, or anyone in a listed channel. Ask names
// who to ask for access (mrkdwn, e.g. "<@U0ADMIN>").
type Access struct {
	Users      []string
	UserGroups []string
	Channels   []string
	Ask        string
}

// Open reports whether the rules list nobody, which means every member of
// the installing workspace may request codes.
func (a Access) Open() bool {
	return len(a.Users) == 0 && len(a.UserGroups) == 0 && len(a.Channels) == 0
}

// groupMembers caches user group members. Slack is asked in the background
// (never before an ack); a check uses what the cache holds.
type groupMembers struct {
	mu      sync.RWMutex
	members map[string][]string // group ID → user IDs
}

func (g *groupMembers) has(group, user string) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return slices.Contains(g.members[group], user)
}

// refresh loads every group named in rules; a group Slack cannot list keeps
// its previous members.
func (b *Bot) refreshGroups(ctx context.Context) {
	seen := map[string]bool{}
	for _, a := range b.cfg.Access {
		for _, g := range a.UserGroups {
			seen[g] = true
		}
	}
	if len(seen) == 0 {
		return
	}
	fresh := map[string][]string{}
	for g := range seen {
		users, err := b.api.GetUserGroupMembersContext(ctx, g)
		if err != nil {
			b.log.Warn("listing user group members", "usergroup", g, "err", err)
			continue
		}
		fresh[g] = users
	}
	b.groups.mu.Lock()
	if b.groups.members == nil {
		b.groups.members = map[string][]string{}
	}
	for g, users := range fresh {
		b.groups.members[g] = users
	}
	b.groups.mu.Unlock()
}

// rulesFor returns the rules for an instance: its own, else the default.
func (b *Bot) rulesFor(instanceID string) Access {
	if a, ok := b.cfg.Access[instanceID]; ok {
		return a
	}
	return b.cfg.Access[""]
}

// allowed reports whether user, in channel, may request codes for instanceID.
func (b *Bot) allowed(instanceID, user, channel string) bool {
	a := b.rulesFor(instanceID)
	if a.Open() {
		return true
	}
	if slices.Contains(a.Users, user) || slices.Contains(a.Channels, channel) {
		return true
	}
	for _, g := range a.UserGroups {
		if b.groups.has(g, user) {
			return true
		}
	}
	return false
}

// allowedAnywhere reports whether user may request codes for at least one
// instance (used for /link history).
func (b *Bot) allowedAnywhere(user, channel string) bool {
	if b.allowed("", user, channel) {
		return true
	}
	for id := range b.cfg.Access {
		if id != "" && b.allowed(id, user, channel) {
			return true
		}
	}
	return false
}
