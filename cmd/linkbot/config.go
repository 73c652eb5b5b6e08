package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/linkbot/linkbot/bot"
	"github.com/linkbot/linkbot/pairing"
	"github.com/linkbot/linkbot/store"
)

// config is everything run needs, from the environment and LINKBOT_CONFIG.
type config struct {
	AppToken      string
	BotToken      string
	WawpToken     string
	SlackAPIURL   string
	WawpBaseURL   string
	DBPath        string
	ConfigPath    string
	DefaultRegion string
	HTTPAddr      string
	LogFormat     string
	Instances     []pairing.Instance
	// Tokens maps instance IDs to their own Wawp access token, for
	// instances on another Wawp account than WAWP_ACCESS_TOKEN's.
	Tokens map[string]string
	// Access holds the access rules: "" for the default, else by instance ID.
	Access       map[string]bot.Access
	PhoneLimit   store.Window
	UserLimit    store.Window
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
	} `yaml:"limits"`
	Access    accessConfig `yaml:"access"`
	Instances []struct {
		Alias    string        `yaml:"alias"`
		ID       string        `yaml:"id"`
		Region   string        `yaml:"region"`
		TokenEnv string        `yaml:"token_env"`
		Access   *accessConfig `yaml:"access"`
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
		CodeLifetime:   pairing.DefaultCodeLifetime,
		WawpTimeout:    pairing.DefaultCallTimeout,
		TickInterval:   5 * time.Second,
		AuditRetention: 365 * 24 * time.Hour,
		Tokens:         map[string]string{},
		Access:         map[string]bot.Access{},
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
		c.WawpBaseURL = pairing.DefaultBaseURL
	} else if u, err := url.Parse(c.WawpBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, "WAWP_BASE_URL must be an http(s) URL")
	}
	if c.DBPath == "" {
		c.DBPath = "linkbot.db"
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
	if c.ConfigPath != "" {
		problems = append(problems, c.loadFile(getenv)...)
	}
	if c.DefaultRegion != "" && !pairing.ValidRegion(c.DefaultRegion) {
		problems = append(problems, fmt.Sprintf("LINKBOT_DEFAULT_REGION %q is not an ISO region code such as EG or GB", c.DefaultRegion))
	}
	if len(problems) > 0 {
		return config{}, &configError{problems: problems}
	}
	return c, nil
}

// checkListenAddr accepts host:port with a numeric port (net.Listen would
// also look up service names such as "http", which distroless images
// cannot: they have no /etc/services). An empty host means every interface.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("must be host:port, e.g. 127.0.0.1:8080")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("has port %q; want a number from 0 to 65535, e.g. 127.0.0.1:8080", port)
	}
	return nil
}

// loadFile reads LINKBOT_CONFIG; values already set by the environment win.
func (c *config) loadFile(getenv func(string) string) []string {
	raw, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		return []string{fmt.Sprintf("LINKBOT_CONFIG: %v", errors.Unwrap(err))}
	}
	var f fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && err.Error() != "EOF" {
		return prefix(c.ConfigPath, []string{strings.TrimPrefix(err.Error(), "yaml: ")})
	}
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	if c.DefaultRegion == "" {
		c.DefaultRegion = strings.ToUpper(f.DefaultRegion)
	}
	if f.CodeLifetime != "" {
		d, err := time.ParseDuration(f.CodeLifetime)
		if err != nil || d < 5*time.Second || d > 10*time.Minute {
			bad("code_lifetime %q must be a duration between 5s and 10m", f.CodeLifetime)
		} else {
			c.CodeLifetime = d
		}
	}
	if f.WawpTimeout != "" {
		d, err := time.ParseDuration(f.WawpTimeout)
		if err != nil || d < 100*time.Millisecond || d > time.Minute {
			bad("wawp_timeout %q must be a duration between 100ms and 1m", f.WawpTimeout)
		} else {
			c.WawpTimeout = d
		}
	}
	if f.TickInterval != "" {
		d, err := time.ParseDuration(f.TickInterval)
		if err != nil || d < time.Second || d > time.Minute || d%time.Second != 0 {
			bad("tick_interval %q must be whole seconds between 1s and 1m", f.TickInterval)
		} else {
			c.TickInterval = d
		}
	}
	if f.AuditRetention != "" {
		d, err := time.ParseDuration(f.AuditRetention)
		switch {
		case f.AuditRetention == "0" || f.AuditRetention == "forever":
			c.AuditRetention = 0
		case err != nil || d < 24*time.Hour:
			bad("audit_retention %q must be a duration of at least 24h, or forever", f.AuditRetention)
		default:
			c.AuditRetention = d
		}
	}
	for name, w := range map[string]struct {
		cfg windowConfig
		dst *store.Window
	}{"phone": {f.Limits.Phone, &c.PhoneLimit}, "user": {f.Limits.User, &c.UserLimit}} {
		if w.cfg.Max < 0 {
			bad("limits.%s.max must be positive", name)
		} else if w.cfg.Max > 0 {
			w.dst.Max = w.cfg.Max
		}
		if w.cfg.Window != "" {
			d, err := time.ParseDuration(w.cfg.Window)
			if err != nil || d < time.Minute || d > 7*24*time.Hour {
				bad("limits.%s.window %q must be a duration between 1m and 168h", name, w.cfg.Window)
			} else {
				w.dst.Period = d
			}
		}
	}
	seen := map[string]bool{}
	for i, in := range f.Instances {
		if !pairing.IsInstanceID(in.ID) {
			bad("instances[%d] (%s): id %q must be the 12-character Wawp instance ID", i, in.Alias, in.ID)
		}
		alias := strings.TrimSpace(in.Alias)
		if alias == "" {
			alias = in.ID
		}
		if seen[strings.ToLower(alias)] {
			bad("instances[%d]: alias %q is used twice", i, alias)
		}
		seen[strings.ToLower(alias)] = true
		region := strings.ToUpper(in.Region)
		if region != "" && !pairing.ValidRegion(region) {
			bad("instances[%d] (%s): region %q is not an ISO region code", i, alias, in.Region)
		}
		if in.TokenEnv != "" {
			if tok := getenv(in.TokenEnv); tok == "" {
				bad("instances[%d] (%s): token_env %s is not set in the environment", i, alias, in.TokenEnv)
			} else {
				c.Tokens[in.ID] = tok
			}
		}
		if in.Access != nil {
			a, errs := in.Access.rules(fmt.Sprintf("instances[%d] (%s).access", i, alias))
			problems = append(problems, errs...)
			c.Access[in.ID] = a
		}
		c.Instances = append(c.Instances, pairing.Instance{ID: in.ID, Name: alias, Region: region})
	}
	a, errs := f.Access.rules("access")
	problems = append(problems, errs...)
	c.Access[""] = a
	return prefix(c.ConfigPath, problems)
}

// prefix names the file in front of each of its problems.
func prefix(path string, problems []string) []string {
	for i, p := range problems {
		problems[i] = fmt.Sprintf("LINKBOT_CONFIG %s: %s", path, p)
	}
	return problems
}

// rules checks the Slack IDs' shapes (U…/W… users, S… groups, C…/G…
// channels): a name where an ID belongs would silently match nobody.
func (a accessConfig) rules(where string) (bot.Access, []string) {
	var problems []string
	check := func(kind string, ids []string, prefixes string) {
		for _, id := range ids {
			if len(id) < 2 || !strings.ContainsRune(prefixes, rune(id[0])) || strings.ToUpper(id) != id {
				problems = append(problems, fmt.Sprintf("%s.%s: %q is not a Slack ID (expected one starting with %s)", where, kind, id, strings.Join(strings.Split(prefixes, ""), " or ")))
			}
		}
	}
	check("users", a.Users, "UW")
	check("usergroups", a.UserGroups, "S")
	check("channels", a.Channels, "CG")
	return bot.Access{Users: a.Users, UserGroups: a.UserGroups, Channels: a.Channels, Ask: a.Ask}, problems
}

// checkConfig validates a config file without connecting anywhere and
// prints what it configures.
func checkConfig(path string, getenv func(string) string, stdout io.Writer) error {
	c := defaultConfig()
	c.ConfigPath = path
	c.DefaultRegion = strings.ToUpper(strings.TrimSpace(getenv("LINKBOT_DEFAULT_REGION")))
	if problems := c.loadFile(getenv); len(problems) > 0 {
		return &configError{problems: problems}
	}
	fmt.Fprintf(stdout, "%s is valid.\n", path)
	fmt.Fprintf(stdout, "default region: %s\n", or(c.DefaultRegion, "none (numbers need a country code)"))
	fmt.Fprintf(stdout, "limits: %d codes per phone per %s, %d per user per %s\n", c.PhoneLimit.Max, c.PhoneLimit.Period, c.UserLimit.Max, c.UserLimit.Period)
	fmt.Fprintf(stdout, "code lifetime %s, tick every %s, Wawp timeout %s\n", c.CodeLifetime, c.TickInterval, c.WawpTimeout)
	retention := "forever"
	if c.AuditRetention > 0 {
		retention = c.AuditRetention.String()
	}
	fmt.Fprintf(stdout, "audit events kept: %s\n", retention)
	fmt.Fprintf(stdout, "access: %s\n", describeAccess(c.Access[""]))
	for _, in := range c.Instances {
		account := "WAWP_ACCESS_TOKEN"
		if _, ok := c.Tokens[in.ID]; ok {
			account = "own token"
		}
		line := fmt.Sprintf("instance %s = %s, region %s, %s", in.Name, in.ID, or(in.Region, or(c.DefaultRegion, "none")), account)
		if a, ok := c.Access[in.ID]; ok {
			line += ", access: " + describeAccess(a)
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}

func describeAccess(a bot.Access) string {
	if a.Open() {
		return "every member of the workspace"
	}
	return fmt.Sprintf("%d users, %d user groups, %d channels", len(a.Users), len(a.UserGroups), len(a.Channels))
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
