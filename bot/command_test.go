package bot

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		text    string
		want    Command
		problem UsageProblem
	}{
		{"", Command{Kind: CommandForm}, ""},
		{"help <@U0AGENT|agent>", Command{}, UsageMention},
		{"  help ", Command{Kind: CommandHelp}, ""},
		{"HELP", Command{Kind: CommandHelp}, ""},
		{"A1B2C3D4E5F6 +20 111 222 3333", Command{Kind: CommandLink, Instance: "A1B2C3D4E5F6", Phone: "+20 111 222 3333"}, ""},
		{"support-eg 0111-222-3333", Command{Kind: CommandLink, Instance: "support-eg", Phone: "0111-222-3333"}, ""},
		{"support-eg <tel:+201112223333|+20 111 222 3333>", Command{Kind: CommandLink, Instance: "support-eg", Phone: "+20 111 222 3333"}, ""},
		{"support-eg <tel:+201112223333>", Command{Kind: CommandLink, Instance: "support-eg", Phone: "+201112223333"}, ""},
		{"support-eg\t+20  111", Command{Kind: CommandLink, Instance: "support-eg", Phone: "+20 111"}, ""},
		{"support-eg", Command{Kind: CommandForm, Instance: "support-eg"}, ""},
		{"history +20 111 222 3333", Command{Kind: CommandHistory, Subject: "+20 111 222 3333"}, ""},
		{"History support-eg", Command{Kind: CommandHistory, Subject: "support-eg"}, ""},
		{"history", Command{}, UsageNoSubject},
		{"<!channel> 123", Command{}, UsageBadInstance},
		{"*bold* 123", Command{}, UsageBadInstance},
		{"support-eg 1\x00", Command{}, UsageControl},
		{strings.Repeat("a", 201), Command{}, UsageTooLong},
		{"bad\xff 1", Command{}, UsageControl},
		// Hand-off: as Slack sends it with should_escape (manifest.yml):
		// mentions as <@U…|name>, numbers it recognised as <tel:…|…>, and
		// what the user typed with &, <, > as entities.
		{"support-eg +20 111 222 3333 <@U0AGENT|agent>", Command{Kind: CommandLink, Instance: "support-eg", Phone: "+20 111 222 3333", Recipient: "U0AGENT"}, ""},
		{"support-eg <tel:+201112223333|+20 111 222 3333> <@U0AGENT|agent>", Command{Kind: CommandLink, Instance: "support-eg", Phone: "+20 111 222 3333", Recipient: "U0AGENT"}, ""},
		{" support-eg  <tel:+201112223333>\t<@W0AGENT> ", Command{Kind: CommandLink, Instance: "support-eg", Phone: "+201112223333", Recipient: "W0AGENT"}, ""},
		{"support-eg 0111&amp;222 <@U0AGENT|agent>", Command{Kind: CommandLink, Instance: "support-eg", Phone: "0111&222", Recipient: "U0AGENT"}, ""},
		{"support-eg &lt;0111&gt; 222", Command{Kind: CommandLink, Instance: "support-eg", Phone: "<0111> 222"}, ""},
		{"&lt;!channel&gt; 123", Command{}, UsageBadInstance},
		{"support-eg <@U0AGENT|agent>", Command{Kind: CommandForm, Instance: "support-eg", Recipient: "U0AGENT"}, ""},
		{"<@U0AGENT|agent>", Command{Kind: CommandForm, Recipient: "U0AGENT"}, ""},
		{"support-eg +20 111 @agent", Command{}, UsageMentionUnescaped},
		{"support-eg <@U0AGENT|agent> +20 111", Command{}, UsageMention},
		{"support-eg +20 111 <@U1AA|a> <@U2BB|b>", Command{}, UsageMention},
		{"history +20 111 <@U0AGENT|agent>", Command{}, UsageMention},
		{"support-eg +20 111 <#C0SUPPORT|support>", Command{}, UsageNotAPerson},
		{"support-eg +20 111 <!subteam^S0TEAM|@field>", Command{}, UsageNotAPerson},
		{"support-eg +20 111 <!here>", Command{}, UsageNotAPerson},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := ParseCommand(tt.text)
			if tt.problem != "" {
				var uerr *UsageError
				if !errors.As(err, &uerr) || uerr.Problem != tt.problem {
					t.Fatalf("ParseCommand(%q) = %+v, %v; want %s", tt.text, got, err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCommand(%q) (-want +got):\n%s", tt.text, diff)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	if got, want := quote("<!channel> & `x`"), "`&lt;!channel&gt; &amp; 'x'`"; got != want {
		t.Errorf("quote = %q, want %q", got, want)
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"", "help", "support-eg +20 111", "x <tel:+1|+1>", "<!here>", "a\x00b", "<<<|>>>",
		"support-eg +20 111 <@U0AGENT|agent>", "x 1 <@U1>", "x &lt;1&gt; &amp;", "x 1 @a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCommand(text)
		if err != nil {
			var uerr *UsageError
			if !errors.As(err, &uerr) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if c.Kind == CommandLink && (c.Instance == "" || strings.TrimSpace(c.Phone) == "" || !instanceName.MatchString(c.Instance)) {
			t.Fatalf("ParseCommand(%q) = %+v", text, c)
		}
		if c.Recipient != "" && (c.Kind != CommandLink || !regexp.MustCompile(`^[UW][A-Z0-9]+$`).MatchString(c.Recipient)) {
			t.Fatalf("ParseCommand(%q) = %+v: a recipient that is no user ID", text, c)
		}
		// What is echoed back can never hold live mrkdwn control sequences.
		if e := escape(c.Phone); strings.ContainsAny(e, "<>") {
			t.Fatalf("escape left markup in %q", e)
		}
	})
}

// TestCommandPhoneEndToEnd: what agents paste reaches pairing.NormalizePhone
// through ParseCommand (Slack's <tel:…|…> unwrapped first) and comes out as
// the number meant (issue 7).
func TestCommandPhoneEndToEnd(t *testing.T) {
	eg := pairing.Phone{Digits: "201112223333", International: "+20 11 12223333", Region: "EG"}
	us := pairing.Phone{Digits: "14155552671", International: "+1 415-555-2671", Region: "US"}
	usExt := us
	usExt.Extension = "89"
	tests := []struct {
		text, region string
		want         pairing.Phone
	}{
		{"support-eg <tel:+201112223333|+20 111 222 3333>", "EG", eg},
		{"support-eg <tel:+201112223333>", "EG", eg},
		{"support-eg tel:+201112223333", "EG", eg},
		{"support-eg <tel:+201112223333|tel:+201112223333>", "EG", eg},
		{"support-us <tel:+14155552671;ext=89|+1 (415) 555‑2671 ext. 89>", "US", usExt},
		{"support-us <tel:+1-415-555-2671;ext=89>", "US", usExt},
		{"support-us <tel:4155552671|(415) 555-2671 x89>", "US", usExt},
		{"support-us (415) 555-2671 x89", "US", usExt},
		{"support-eg \u200e+٢٠ ١١١ ٢٢٢ ٣٣٣٣\u200e", "EG", eg},
		{"support-eg ＋２０　１１１　２２２　３３３３", "", eg},
		{"support-eg 0111–222–3333", "EG", eg},
		{"support-eg +20\u2009111\u2009222\u20093333", "", eg},
		{"support-eg +20\u00a0111\u00a0222\u00a03333", "", eg},
		{"support-eg +20\u200b111\u200b222\u200b3333", "", eg},
		{"support-eg 0111/222/3333", "EG", eg},
		{"support-ng 009 1 415 555 2671", "NG", us},
		{"support-ng 00 20 111 222 3333", "", eg},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			cmd, err := ParseCommand(tt.text)
			if err != nil || cmd.Kind != CommandLink {
				t.Fatalf("ParseCommand(%q) = %+v, %v", tt.text, cmd, err)
			}
			got, err := pairing.NormalizePhone(cmd.Phone, tt.region)
			if err != nil {
				t.Fatalf("NormalizePhone(%q, %q): %v", cmd.Phone, tt.region, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%q (-want +got):\n%s", tt.text, diff)
			}
		})
	}
}
