package main

import (
	"strings"
	"testing"

	"github.com/linkbot/linkbot/bot/fakeslack"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

func TestAccessRules(t *testing.T) {
	rules := "access:\n  users: [UALLOWED]\n  usergroups: [SSUPPORT]\n  channels: [CFIELD]\n  ask: \"<@UADMIN>\"\n"
	tests := []struct {
		name, user, channel, team string
		want                      string
	}{
		{"allowed user", "UALLOWED", "CRANDOM", "", "Enter this code"},
		{"allowed channel", "USOMEONE", "CFIELD", "", "Enter this code"},
		{"user group member", "UGROUPIE", "CRANDOM", "", "Enter this code"},
		{"refused user", "USTRANGER", "CRANDOM", "", "🔒 You are not on the list of people who may request pairing codes for support-eg. Ask <@UADMIN> for access."},
		{"foreign team", "UALLOWED", "CFIELD", "TOTHERORG", "serves only the workspace that installed it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.setConfig(rules)
			h.slack.SetUserGroup("SSUPPORT", "UGROUPIE", "UOTHER")
			h.start()
			env, err := h.slack.SendCommand(fakeslack.Command{User: tt.user, Channel: tt.channel, Team: tt.team, Text: "support-eg +201112223333"})
			if err != nil {
				t.Fatal(err)
			}
			h.waitText(env.MessageID, tt.want)
			refused := !strings.Contains(tt.want, "Enter this code")
			if got := len(h.wawp.Calls(fakewawp.RequestCode)); refused && got != 0 {
				t.Errorf("refused request reached Wawp")
			}
			h.stop()
			var audited bool
			for _, e := range h.auditEvents() {
				audited = audited || (e.Kind == "refused" && e.User == tt.user)
			}
			if audited != refused {
				t.Errorf("refusal audited = %v, want %v", audited, refused)
			}
		})
	}
}

func TestInstanceRulesOverrideDefault(t *testing.T) {
	h := newHarness(t)
	writeFile(t, h.configPath, "access:\n  users: [UDEFAULT]\ninstances:\n  - alias: support-eg\n    id: "+instanceEG+"\n    region: EG\n    access:\n      users: [UEGONLY]\n      ask: \"#eg-leads\"\n")
	h.start()
	env := h.command("UDEFAULT", "support-eg +201112223333")
	h.waitText(env.MessageID, "Ask #eg-leads for access")
	env = h.command("UEGONLY", "support-eg +201112223333")
	h.waitText(env.MessageID, "Enter this code")
}

func TestInstanceOnAnotherWawpAccount(t *testing.T) {
	h := newHarness(t)
	const other = "B1B2C3D4E5F6"
	h.wawp.AddInstance(other, "")
	h.wawp.SetToken(other, "second-account-token")
	h.env["WAWP_TOKEN_NG"] = "second-account-token"
	h.setConfig("  - alias: field-ng\n    id: " + other + "\n    region: NG\n    token_env: WAWP_TOKEN_NG\n")
	h.start()
	env := h.command("U1", "field-ng 0802 123 4567")
	h.waitText(env.MessageID, "Enter this code on the phone *+234 802 123 4567*")
	if strings.Contains(h.logs.String(), "second-account-token") {
		t.Error("log holds the second account's token")
	}
}
