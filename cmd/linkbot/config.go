package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/linkbot/linkbot/bot"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/pairing/wawp"
	"github.com/linkbot/linkbot/store/postgres"
)

// config is everything run needs, from the environment and LINKBOT_CONFIG.
type config struct {
	AppToken      string
	BotToken      string
	WawpToken     string
	SlackAPIURL   string
	WawpBaseURL   string
	DBPath        string
	DatabaseURL   string // LINKBOT_DATABASE_URL: when set, PostgreSQL instead of the file at DBPath
	ConfigPath    string
	DefaultRegion string
	HTTPAddr      string
	LogFormat     string
	Instances     []pairing.Instance
	// Tokens maps instance IDs to their own Wawp access token, for
	// instances on another Wawp account than WAWP_ACCESS_TOKEN's.
	Tokens map[string]string
	// Access holds the access rules: "" for the default, else by instance ID.
	Access map[string]bot.Access
	// Delivery is where codes go: "" for the default, else by instance ID
	// (only those that set their own).
	Delivery map[string]pairing.Delivery
	// Announce says whether pairings get a status card in the channel: ""
	// for the default, else by instance ID (only those that set their own).
	Announce     map[string]bool
	PhoneLimit   pairing.Window
	UserLimit    pairing.Window
	QRLimit      pairing.Window // QR links per instance (the QR fallback, issue 10)
	CodeLifetime time.Duration
	WawpTimeout  time.Duration
	TickInterval time.Duration
	// AuditRetention is how long audit events are kept (0: forever).
	AuditRetention time.Duration
}

// configError lists every problem with the configuration at once, so an
// admin fixes them in one go; main exits exitConfig (78) on it.
type configError struct{ problems []string }

func (e *configError) Error() string {
	return "configuration is invalid:\n  - " + strings.Join(e.problems, "\n  - ")
}

// fileConfig is the YAML file's shape.
type fileConfig struct {
	DefaultRegion  string `yaml:"default_region"`
	CodeLifetime   string `yaml:"code_lifetime"`
	WawpTimeout    string `yaml:"wawp_timeout"`
	TickInterval   string `yaml:"tick_interval"`
	AuditRetention string `yaml:"audit_retention"`
	Limits         struct {
		Phone windowConfig `yaml:"phone"`
		User  windowConfig `yaml:"user"`
		QR    windowConfig `yaml:"qr"`
	} `yaml:"limits"`
	Access accessConfig `yaml:"access"`
	// Delivery is where codes go: ephemeral (the requester's ephemeral
	// messages, the default) or dm (their DM with the app).
	Delivery string `yaml:"delivery"`
	// Announce posts a status card in the channel where /link was typed
	// (who asked, for whom, the masked phone, how it stands).
	Announce  *bool `yaml:"announce"`
	Instances []struct {
		Alias    string        `yaml:"alias"`
		ID       string        `yaml:"id"`
		Region   string        `yaml:"region"`
		TokenEnv string        `yaml:"token_env"`
		Access   *accessConfig `yaml:"access"`
		Delivery string        `yaml:"delivery"`
		Announce *bool         `yaml:"announce"`
	} `yaml:"instances"`
}

// accessConfig says who may request codes: any listed user, any member of
// a listed user group, or anyone in a listed channel.
type accessConfig struct {
	Users      []string `yaml:"users"`
	UserGroups []string `yaml:"usergroups"`
	Channels   []string `yaml:"channels"`
	Ask        string   `yaml:"ask"`
}

type windowConfig struct {
	Max    int    `yaml:"max"`
	Window string `yaml:"window"`
}

// defaultConfig is the configuration before the environment and the file.
func defaultConfig() config {
	return config{
		PhoneLimit:     pairing.DefaultPhoneLimit,
		UserLimit:      pairing.DefaultUserLimit,
		QRLimit:        pairing.DefaultQRLimit,
		CodeLifetime:   pairing.DefaultCodeLifetime,
		WawpTimeout:    pairing.DefaultCallTimeout,
		TickInterval:   5 * time.Second,
		AuditRetention: 365 * 24 * time.Hour,
		Tokens:         map[string]string{},
		Access:         map[string]bot.Access{},
		Delivery:       map[string]pairing.Delivery{"": pairing.DeliveryEphemeral},
		Announce:       map[string]bool{"": false},
	}
}

func loadConfig(getenv func(string) string) (config, error) {
	var problems []string
	c := defaultConfig()
	c.AppToken = getenv("SLACK_APP_TOKEN")
	c.BotToken = getenv("SLACK_BOT_TOKEN")
	c.WawpToken = getenv("WAWP_ACCESS_TOKEN")
	c.SlackAPIURL = getenv("SLACK_API_URL")
	c.WawpBaseURL = getenv("WAWP_BASE_URL")
	c.DBPath = getenv("LINKBOT_DB")
	c.DatabaseURL = getenv("LINKBOT_DATABASE_URL")
	c.ConfigPath = getenv("LINKBOT_CONFIG")
	c.DefaultRegion = strings.ToUpper(strings.TrimSpace(getenv("LINKBOT_DEFAULT_REGION")))
	c.HTTPAddr = getenv("LINKBOT_HTTP_ADDR")
	c.LogFormat = getenv("LINKBOT_LOG_FORMAT")
	switch {
	case c.AppToken == "":
		problems = append(problems, "SLACK_APP_TOKEN is not set (the app-level token xapp-… with connections:write)")
	case !strings.HasPrefix(c.AppToken, "xapp-"):
		problems = append(problems, "SLACK_APP_TOKEN must be an app-level token starting with xapp-")
	}
	switch {
	case c.BotToken == "":
		problems = append(problems, "SLACK_BOT_TOKEN is not set (the bot token xoxb-…)")
	case !strings.HasPrefix(c.BotToken, "xoxb-"):
		problems = append(problems, "SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
	}
	if c.WawpToken == "" {
		problems = append(problems, "WAWP_ACCESS_TOKEN is not set")
	}
	if c.SlackAPIURL == "" {
		c.SlackAPIURL = "https://slack.com/api/"
	} else if u, err := url.Parse(c.SlackAPIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, "SLACK_API_URL must be an http(s) URL")
	} else if !strings.HasSuffix(c.SlackAPIURL, "/") {
		c.SlackAPIURL += "/"
	}
	if c.WawpBaseURL == "" {
		c.WawpBaseURL = wawp.DefaultBaseURL
	} else if u, err := url.Parse(c.WawpBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, "WAWP_BASE_URL must be an http(s) URL")
	}
	if c.DBPath == "" {
		c.DBPath = "linkbot.db"
	}
	if c.DatabaseURL != "" {
		if err := postgres.CheckURL(c.DatabaseURL); err != nil {
			problems = append(problems, "LINKBOT_DATABASE_URL "+err.Error())
		}
	}
	if c.HTTPAddr != "" {
		if err := checkListenAddr(c.HTTPAddr); err != nil {
			problems = append(problems, fmt.Sprintf("LINKBOT_HTTP_ADDR %q %v", c.HTTPAddr, err))
		}
	}
	switch c.LogFormat {
	case "":
		c.LogFormat = "json"
	case "json", "text":
	default:
		problems = append(problems, fmt.Sprintf("LINKBOT_LOG_FORMAT must be json or text, not %q", c.LogFormat))
	}
	// Only the variable's own value is blamed on it; the file's
	// default_region is checked, at its line, by loadFile.
	if c.DefaultRegion != "" && !pairing.ValidRegion(c.DefaultRegion) {
		problems = append(problems, fmt.Sprintf("LINKBOT_DEFAULT_REGION %q is not an ISO region code such as EG or GB", c.DefaultRegion))
	}
	if c.ConfigPath != "" {
		fileProblems, unsetEnv := c.loadFile(getenv)
		problems = append(append(problems, fileProblems...), unsetEnv...)
	}
	if len(problems) > 0 {
		return config{}, &configError{problems: problems}
	}
	return c, nil
}

// checkListenAddr accepts host:port with a numeric port (net.Listen would
// also look up service names such as "http", which distroless images
// cannot: they have no /etc/services). The host is empty (every
// interface), an IP address, or a syntactically valid host name; anything
// else ("bad host", "256.1.1.1") could never be listened on.
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("must be host:port, e.g. 127.0.0.1:8080")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("has port %q; want a number from 0 to 65535, e.g. 127.0.0.1:8080", port)
	}
	if _, err := netip.ParseAddr(host); host != "" && err != nil && !isHostName(host) {
		return fmt.Errorf("has host %q, which is neither an IP address nor a host name; e.g. 127.0.0.1:8080, or :8080 for every interface", host)
	}
	return nil
}

// isHostName says whether s is a syntactically valid host name (RFC 1123):
// dot-separated labels of 1–63 letters, digits, hyphens (and underscores,
// which resolvers accept and Compose service names use), no label starting
// or ending with a hyphen, at most 253 characters, and a last label that
// is not all digits (RFC 3696 §2: "256.1.1.1" is a bad IP address, not a
// name).
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// loadFile reads the config file at c.ConfigPath; values already set by the
// environment win. It returns every problem at once, each as FILE:LINE: …,
// and apart from them the token_env variables that are not set (a problem
// for the bot, only a note for check-config, which may run where the
// tokens are not).
func (c *config) loadFile(getenv func(string) string) (problems, unsetEnv []string) {
	fc := &fileCheck{path: c.ConfigPath, lines: map[string]int{}}
	raw, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		var perr *fs.PathError
		if errors.As(err, &perr) {
			err = perr.Err // the path is already in front
		}
		fc.add(0, err.Error())
		return fc.list(), nil
	}
	var f fileConfig
	if !fc.parse(raw, &f) {
		return fc.list(), nil
	}
	if region := strings.ToUpper(strings.TrimSpace(f.DefaultRegion)); region != "" && !pairing.ValidRegion(region) {
		fc.bad("default_region", "default_region %q is not an ISO region code such as EG or GB", f.DefaultRegion)
	} else if c.DefaultRegion == "" {
		c.DefaultRegion = region
	}
	fc.duration("code_lifetime", f.CodeLifetime, durationRule{lo: 5 * time.Second, hi: 10 * time.Minute}, &c.CodeLifetime)
	fc.duration("wawp_timeout", f.WawpTimeout, durationRule{lo: 100 * time.Millisecond, hi: time.Minute}, &c.WawpTimeout)
	fc.duration("tick_interval", f.TickInterval, durationRule{lo: time.Second, hi: time.Minute, wholeSeconds: true}, &c.TickInterval)
	if f.AuditRetention == "0" || f.AuditRetention == "forever" {
		c.AuditRetention = 0
	} else {
		fc.duration("audit_retention", f.AuditRetention, durationRule{lo: 24 * time.Hour, orElse: "forever"}, &c.AuditRetention)
	}
	for _, w := range []struct {
		name string
		cfg  windowConfig
		dst  *pairing.Window
	}{{"phone", f.Limits.Phone, &c.PhoneLimit}, {"user", f.Limits.User, &c.UserLimit}, {"qr", f.Limits.QR, &c.QRLimit}} {
		path := "limits." + w.name
		if w.cfg.Max < 0 {
			fc.bad(path+".max", "%s.max must be positive", path)
		} else if w.cfg.Max > 0 {
			w.dst.Max = w.cfg.Max
		}
		fc.duration(path+".window", w.cfg.Window, durationRule{lo: time.Minute, hi: 7 * 24 * time.Hour}, &w.dst.Period)
	}
	// Aliases and IDs share one namespace (the Directory resolves both,
	// case-insensitively): a name given twice would silently send one
	// instance's requests with the other's token and access rules.
	type owner struct {
		index int
		what  string // "id" or "alias"
	}
	names := map[string]owner{}
	describe := func(i int) string {
		if a := strings.TrimSpace(f.Instances[i].Alias); a != "" {
			return fmt.Sprintf("instances[%d] (%s)", i, a)
		}
		return fmt.Sprintf("instances[%d]", i)
	}
	for i, in := range f.Instances {
		if other, dup := names[strings.ToLower(in.ID)]; dup {
			fc.bad(fmt.Sprintf("instances[%d]", i), "%s: id %q is already %s; list each instance once", describe(i), in.ID, describe(other.index))
		} else if in.ID != "" {
			names[strings.ToLower(in.ID)] = owner{i, "id"}
		}
	}
	for i, in := range f.Instances {
		where := fmt.Sprintf("instances[%d]", i)
		alias := strings.TrimSpace(in.Alias)
		if alias == "" {
			alias = in.ID
		} else if other, taken := names[strings.ToLower(alias)]; taken && other.index != i {
			if other.what == "id" {
				fc.bad(where, "%s: alias %q is the ID of %s", where, alias, describe(other.index))
			} else {
				fc.bad(where, "%s: alias %q is already instances[%d]'s", where, alias, other.index)
			}
		} else if !taken {
			names[strings.ToLower(alias)] = owner{i, "alias"}
		}
		if !pairing.IsInstanceID(in.ID) {
			fc.bad(where+".id", "%s (%s): id %q must be the 12-character Wawp instance ID", where, alias, in.ID)
		}
		region := strings.ToUpper(in.Region)
		if region != "" && !pairing.ValidRegion(region) {
			fc.bad(where+".region", "%s (%s): region %q is not an ISO region code", where, alias, in.Region)
		}
		if in.TokenEnv != "" {
			if tok := getenv(in.TokenEnv); tok == "" {
				unsetEnv = append(unsetEnv, fmt.Sprintf("%s:%d: %s (%s): token_env %s is not set in the environment",
					c.ConfigPath, fc.line(where+".token_env"), where, alias, in.TokenEnv))
			} else {
				c.Tokens[in.ID] = tok
			}
		}
		if in.Access != nil {
			c.Access[in.ID] = in.Access.rules(fc, fmt.Sprintf("%s (%s).access", where, alias), where+".access")
		}
		if d, ok := fc.delivery(where+".delivery", fmt.Sprintf("%s (%s): delivery", where, alias), in.Delivery); ok && d != "" {
			c.Delivery[in.ID] = d
		}
		if in.Announce != nil {
			c.Announce[in.ID] = *in.Announce
		}
		c.Instances = append(c.Instances, pairing.Instance{ID: in.ID, Name: alias, Region: region})
	}
	c.Access[""] = f.Access.rules(fc, "access", "access")
	if d, ok := fc.delivery("delivery", "delivery", f.Delivery); ok && d != "" {
		c.Delivery[""] = d
	}
	if f.Announce != nil {
		c.Announce[""] = *f.Announce
	}
	if len(unsetEnv) > maxConfigProblems {
		unsetEnv = append(unsetEnv[:maxConfigProblems], fmt.Sprintf("… and %d more unset token_env variables", len(unsetEnv)-maxConfigProblems))
	}
	return fc.list(), unsetEnv
}

// delivery reads a delivery setting (name is how a problem calls it, path
// where it is): "" when it is not set, false when it is neither ephemeral
// nor dm.
func (fc *fileCheck) delivery(path, name, value string) (pairing.Delivery, bool) {
	switch d := pairing.Delivery(strings.ToLower(strings.TrimSpace(value))); d {
	case "", pairing.DeliveryEphemeral, pairing.DeliveryDM:
		return d, true
	}
	fc.bad(path, "%s %q must be ephemeral (the requester's ephemeral messages in the channel) or dm (their DM with the bot)", name, value)
	return "", false
}

// rules checks the Slack IDs' shapes (U…/W… users, S… groups, C…/G…
// channels): a name where an ID belongs would silently match nobody. name
// is how problems call the rules; path is where they are in the file.
func (a accessConfig) rules(fc *fileCheck, name, path string) bot.Access {
	check := func(kind string, ids []string, prefixes string) {
		for i, id := range ids {
			if len(id) < 2 || !strings.ContainsRune(prefixes, rune(id[0])) || strings.ToUpper(id) != id {
				fc.bad(fmt.Sprintf("%s.%s[%d]", path, kind, i), "%s.%s: %q is not a Slack ID (expected one starting with %s)", name, kind, id, strings.Join(strings.Split(prefixes, ""), " or "))
			}
		}
	}
	check("users", a.Users, "UW")
	check("usergroups", a.UserGroups, "S")
	check("channels", a.Channels, "CG")
	return bot.Access{Users: a.Users, UserGroups: a.UserGroups, Channels: a.Channels, Ask: a.Ask}
}

// fileOnlyConfig reads the config file at path, and LINKBOT_DEFAULT_REGION
// which overrides its default_region, for the commands that need no tokens
// (check-config, audit): the token_env variables that are not set are
// returned as notes, not problems.
func fileOnlyConfig(path string, getenv func(string) string) (c config, unsetEnv []string, err error) {
	c = defaultConfig()
	c.ConfigPath = path
	c.DefaultRegion = strings.ToUpper(strings.TrimSpace(getenv("LINKBOT_DEFAULT_REGION")))
	problems, unsetEnv := c.loadFile(getenv)
	if c.DefaultRegion != "" && !pairing.ValidRegion(c.DefaultRegion) {
		problems = append(problems, fmt.Sprintf("LINKBOT_DEFAULT_REGION %q (from the environment) is not an ISO region code such as EG or GB", c.DefaultRegion))
	}
	if len(problems) > 0 {
		return config{}, nil, &configError{problems: problems}
	}
	return c, unsetEnv, nil
}

// checkConfig validates a config file without connecting anywhere and
// prints what it configures.
func checkConfig(path string, getenv func(string) string, stdout io.Writer) error {
	c, unsetEnv, err := fileOnlyConfig(path, getenv)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is valid.\n", path)
	fmt.Fprintf(stdout, "default region: %s\n", or(c.DefaultRegion, "none (numbers need a country code)"))
	fmt.Fprintf(stdout, "limits: %d codes per phone per %s, %d per user per %s, %d QR links per instance per %s\n",
		c.PhoneLimit.Max, c.PhoneLimit.Period, c.UserLimit.Max, c.UserLimit.Period, c.QRLimit.Max, c.QRLimit.Period)
	fmt.Fprintf(stdout, "code lifetime %s, tick every %s, Wawp timeout %s\n", c.CodeLifetime, c.TickInterval, c.WawpTimeout)
	retention := "forever"
	if c.AuditRetention > 0 {
		retention = c.AuditRetention.String()
	}
	fmt.Fprintf(stdout, "audit events kept: %s\n", retention)
	fmt.Fprintf(stdout, "access: %s\n", describeAccess(c.Access[""]))
	fmt.Fprintf(stdout, "codes go to: %s\n", describeDelivery(c.Delivery[""]))
	fmt.Fprintf(stdout, "status cards: %s\n", describeAnnounce(c.Announce[""]))
	for _, in := range c.Instances {
		account := "WAWP_ACCESS_TOKEN"
		if _, ok := c.Tokens[in.ID]; ok {
			account = "own token"
		}
		line := fmt.Sprintf("instance %s = %s, region %s, %s", in.Name, in.ID, or(in.Region, or(c.DefaultRegion, "none")), account)
		if a, ok := c.Access[in.ID]; ok {
			line += ", access: " + describeAccess(a)
		}
		if d, ok := c.Delivery[in.ID]; ok {
			line += ", codes go to: " + describeDelivery(d)
		}
		if a, ok := c.Announce[in.ID]; ok {
			line += ", status cards: " + describeAnnounce(a)
		}
		fmt.Fprintln(stdout, line)
	}
	for _, note := range unsetEnv {
		fmt.Fprintf(stdout, "note: %s; the bot will not start without it\n", note)
	}
	return nil
}

func describeAccess(a bot.Access) string {
	if a.Open() {
		return "every member of the workspace"
	}
	return fmt.Sprintf("%d users, %d user groups, %d channels", len(a.Users), len(a.UserGroups), len(a.Channels))
}

func describeDelivery(d pairing.Delivery) string {
	if d == pairing.DeliveryDM {
		return "the requester's DM with the bot (needs the app's Messages tab)"
	}
	return "the requester's ephemeral messages in the channel"
}

func describeAnnounce(on bool) string {
	if on {
		return "on (one public card per /link in its channel: masked phone and state, never the code; the bot must be in the channel)"
	}
	return "off"
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
