package fakeslack

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// How a message was made, or one of its versions: Message.Via and
// Version.Via.
const (
	// ViaAck: the ack payload of a slash command. Slack shows it as an
	// ephemeral message that can never be changed afterwards
	// (slackapi/java-slack-sdk issue 951).
	ViaAck = "ack"
	// ViaCommandURL: a post to a slash command's response_url. Each post
	// adds a new ephemeral message; replace_original and delete_original
	// have no effect there (slackapi/bolt-python issue 1268, bolt-js issue
	// 2287).
	ViaCommandURL = "command_response_url"
	// ViaClickURL: a post to a button click's (an interaction's)
	// response_url. With replace_original it replaces the message that held
	// the button, ephemeral or not; with delete_original it deletes it;
	// with neither it adds an ephemeral message.
	ViaClickURL = "interaction_response_url"
	// ViaPostMessage: chat.postMessage (in a channel, or in the app's DM
	// with a user).
	ViaPostMessage = "chat.postMessage"
	// ViaPostEphemeral: chat.postEphemeral; the app can neither update nor
	// delete it.
	ViaPostEphemeral = "chat.postEphemeral"
	// ViaUpdate: chat.update, on the bot's own non-ephemeral messages only.
	ViaUpdate = "chat.update"
	// ViaDelete: the message was deleted (chat.delete, or delete_original
	// through a click's response_url).
	ViaDelete = "deleted"
)

// Version is one state of a message as its readers see it.
type Version struct {
	Text         string
	Blocks       json.RawMessage
	ResponseType string
	At           time.Time
	Via          string // how this version came: ack, a response_url, chat.postMessage, chat.update, …
	// Seq orders every version of every message: what happened first on
	// anyone's screen has the lower Seq.
	Seq int
}

// Message is one message in a conversation: an ephemeral message shown to
// one user in a channel, a message in a channel, or a message in the app's
// DM with a user.
type Message struct {
	ID        string // the fake's own, stable ID
	Channel   string // the conversation: C…/G… for a channel, D… for the app's DM with a user
	TS        string // the message's ts (Slack gives ephemeral messages one too, in click payloads)
	User      string // an ephemeral message's only reader; a DM's other member
	Ephemeral bool
	Via       string // how it was made: ViaAck, ViaCommandURL, ViaClickURL, ViaPostMessage, ViaPostEphemeral
	// Origin is the ID of the ack message of the slash command this message
	// answers (through its response_url or a click on one of its answers);
	// empty for messages made with the Web API.
	Origin   string
	Versions []Version
	Deleted  bool
	// Editable says whether the app could still change the message, as
	// Message, Messages, Screen and Thread report it: an ephemeral message
	// only through the response_url of a click on it that has a use left
	// and is under 30 minutes old (never the ack's); a message of the
	// bot's own through chat.update, unless its edit window closed or it
	// was removed.
	Editable bool

	windowClosed bool // chat.update answers edit_window_closed
	removed      bool // gone without the app deleting it: chat.update answers message_not_found
}

// Latest is the message's current state (the zero Version if it has none).
func (m Message) Latest() Version {
	if len(m.Versions) == 0 {
		return Version{}
	}
	return m.Versions[len(m.Versions)-1]
}

// Text is everything a reader sees in the message now, markup kept: its
// fallback text and the text of every block, buttons in brackets.
func (m Message) Text() string { return m.Latest().Shown() }

// Shown is everything a reader sees in v, markup kept: the fallback text
// and the text of every block, one per line, buttons as "[ label ]".
func (v Version) Shown() string {
	return strings.Join(append([]string{v.Text}, blockTexts(v.Blocks)...), "\n")
}

// blockTexts lists the texts of a message's blocks.
func blockTexts(blocks json.RawMessage) []string {
	type textObject struct {
		Text string `json:"text"`
	}
	var list []struct {
		Type     string      `json:"type"`
		Text     *textObject `json:"text"`
		Elements []struct {
			Type string          `json:"type"`
			Text json.RawMessage `json:"text"`
		} `json:"elements"`
	}
	json.Unmarshal(blocks, &list)
	var lines []string
	for _, b := range list {
		if b.Text != nil {
			lines = append(lines, b.Text.Text)
		}
		for _, e := range b.Elements {
			var s string
			if json.Unmarshal(e.Text, &s) != nil {
				var obj textObject
				json.Unmarshal(e.Text, &obj)
				s = obj.Text
			}
			if e.Type == "button" {
				s = "[ " + s + " ]"
			}
			lines = append(lines, s)
		}
	}
	return lines
}

// codePattern is what a WhatsApp pairing code looks like as linkbot shows
// it (XXXX-XXXX). The fake fails the test when one appears anywhere a
// channel can see, or in any message's fallback text.
var codePattern = regexp.MustCompile(`\b[A-Z0-9]{4}-[A-Z0-9]{4}\b`)

// qrLinkPattern is a hosted QR page's link (Wawp's temp-link, as
// fakewawp makes them): a credential like the code (issue 10).
var qrLinkPattern = regexp.MustCompile(`/temp-qr/[0-9a-f]{16,}`)

// ShowsQRLink reports whether v shows (or links to) a hosted QR page.
func (v Version) ShowsQRLink() bool {
	return qrLinkPattern.MatchString(v.Text) || qrLinkPattern.Match(v.Blocks)
}

// ShowsCode reports whether v shows something that looks like a pairing code.
func (v Version) ShowsCode() bool { return codePattern.MatchString(v.Shown()) }

// phonePattern is a phone number shown in full: seven digits or more in a
// row, with the spaces, dashes, dots, slashes and parentheses numbers are
// written with, not part of a word (an instance ID such as INST00000001). A
// masked number (+20 11 ••• 333) has at most five in a row. Slack markup in angle brackets (date tokens carry a Unix time, user
// IDs digits) is left out first (markup).
var (
	phonePattern = regexp.MustCompile(`(?:^|[^\p{L}\p{N}_])\+?\d(?:[ \-./()\x{00a0}]*\d){6,}(?:$|[^\p{L}_])`)
	markup       = regexp.MustCompile(`<[^<>]*>`)
)

// ShowsPhone reports whether v shows something that looks like a whole
// phone number (markup aside).
func (v Version) ShowsPhone() bool {
	return phonePattern.MatchString(markup.ReplaceAllString(v.Shown(), ""))
}

// DMChannel is the ID of the app's DM with user, as chat.postMessage to
// the user's ID reports it.
func DMChannel(user string) string {
	return "D" + strings.TrimLeft(user, "UW")
}

// dmUser is the user whose DM with the app channel is ("" when channel is
// not such a DM).
func (s *Server) dmUser(channel string) string {
	return s.dms[channel]
}

// addMessageLocked appends m with its first version. s.mu must be held.
func (s *Server) addMessageLocked(m *Message, v Version) *Message {
	s.seq++
	if m.ID == "" {
		m.ID = fmt.Sprintf("M%05d", s.seq)
	}
	s.tsSeq++
	m.TS = fmt.Sprintf("1700000000.%06d", s.tsSeq)
	if m.Origin == "" && (m.Via == ViaAck || m.Via == ViaCommandURL) {
		m.Origin = m.ID
	}
	v.Seq = s.seq
	m.Versions = []Version{v}
	s.messages[m.ID] = m
	s.msgOrder = append(s.msgOrder, m.ID)
	s.checkCodeLocked(m, v)
	s.notifyLocked()
	return m
}

// changeMessageLocked adds version v to m. s.mu must be held.
func (s *Server) changeMessageLocked(m *Message, v Version) {
	s.seq++
	v.Seq = s.seq
	m.Versions = append(m.Versions, v)
	if v.Via == ViaDelete {
		m.Deleted = true
	}
	s.checkCodeLocked(m, v)
	s.notifyLocked()
}

// checkCodeLocked fails the test when v shows a pairing code where it must
// never be: in a message a channel can see, or in any fallback text; or a
// whole phone number in a message a channel can see (a status card shows
// only the masked number).
func (s *Server) checkCodeLocked(m *Message, v Version) {
	public := !m.Ephemeral && s.dmUser(m.Channel) == ""
	switch {
	case codePattern.MatchString(v.Text):
		s.violateLocked("message %s: fallback text shows a pairing code: %q", m.ID, v.Text)
	case qrLinkPattern.MatchString(v.Text):
		s.violateLocked("message %s: fallback text shows a QR link", m.ID)
	case public && v.ShowsQRLink():
		s.violateLocked("message %s in channel %s shows a QR link to everyone in it", m.ID, m.Channel)
	case public && v.ShowsCode():
		s.violateLocked("message %s in channel %s shows a pairing code to everyone in it", m.ID, m.Channel)
	case public && v.ShowsPhone():
		s.violateLocked("message %s in channel %s shows a whole phone number to everyone in it: %q", m.ID, m.Channel, v.Shown())
	}
}

// editableLocked says whether the app could still change m at now.
func (s *Server) editableLocked(m *Message, now time.Time) bool {
	if m.Deleted || m.removed {
		return false
	}
	if !m.Ephemeral {
		return !m.windowClosed
	}
	if m.Via == ViaAck {
		return false
	}
	for _, u := range s.urls {
		if u.kind == clickURL && u.messageID == m.ID && u.uses < ResponseURLUses && now.Sub(u.issued) <= ResponseURLLifetime {
			return true
		}
	}
	return false
}

// copyLocked is a copy of m as a reader sees it at now.
func (s *Server) copyLocked(m *Message, now time.Time) Message {
	c := *m
	c.Versions = append([]Version(nil), m.Versions...)
	c.Editable = s.editableLocked(m, now)
	return c
}

// Message returns a copy of message id (the zero Message if there is none).
func (s *Server) Message(id string) Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messages[id]
	if m == nil {
		return Message{}
	}
	return s.copyLocked(m, s.now())
}

// Messages returns every message, deleted ones included, in the order
// they appeared.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]Message, 0, len(s.msgOrder))
	for _, id := range s.msgOrder {
		out = append(out, s.copyLocked(s.messages[id], now))
	}
	return out
}

// Screen is what user sees in channel now, oldest first: the ephemeral
// messages shown to them there and every message of the channel (for a
// DM channel, only its own user sees it). Deleted messages are gone.
func (s *Server) Screen(user, channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if u := s.dmUser(channel); u != "" && u != user {
		return nil
	}
	var out []Message
	for _, id := range s.msgOrder {
		m := s.messages[id]
		if m.Deleted || m.removed || m.Channel != channel || m.Ephemeral && m.User != user {
			continue
		}
		out = append(out, s.copyLocked(m, now))
	}
	return out
}

// DMScreen is what user sees in their DM with the app.
func (s *Server) DMScreen(user string) []Message { return s.Screen(user, DMChannel(user)) }

// Thread is what one slash command brought onto its user's screen, oldest
// first: its ack (message id, its Envelope's MessageID) and every message
// posted through its response_url or through clicks on them, deleted ones
// left out.
func (s *Server) Thread(id string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []Message
	for _, mid := range s.msgOrder {
		m := s.messages[mid]
		if m.Origin == id && !m.Deleted && !m.removed {
			out = append(out, s.copyLocked(m, now))
		}
	}
	return out
}

// Posted returns the messages made through chat.postMessage and
// chat.postEphemeral, as first posted.
func (s *Server) Posted() []Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Version
	for _, id := range s.msgOrder {
		if m := s.messages[id]; m.Via == ViaPostMessage || m.Via == ViaPostEphemeral {
			out = append(out, m.Versions[0])
		}
	}
	return out
}

// OpenMessage creates an ephemeral message for user in C0SUPPORT and a
// response_url for it, as if a slash command had been delivered and acked
// with text: posts to the url add messages below it. For tests that drive
// the bot without a socket.
func (s *Server) OpenMessage(user, text string) (msgID, url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.addMessageLocked(&Message{User: user, Channel: "C0SUPPORT", Ephemeral: true, Via: ViaAck},
		Version{Text: text, ResponseType: "ephemeral", At: time.Now(), Via: ViaAck})
	return m.ID, s.newResponseURLLocked(commandURL, m.ID, user, m.Channel)
}

// NewResponseURL issues the response_url of a click on message msgID, as a
// click on one of its buttons would: it replaces that message.
func (s *Server) NewResponseURL(msgID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messages[msgID]
	user, channel := "", ""
	if m != nil {
		user, channel = m.User, m.Channel
	}
	return s.newResponseURLLocked(clickURL, msgID, user, channel)
}
