package fakeslack

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Block Kit limits Slack enforces (https://api.slack.com/reference/block-kit).
const (
	MaxBlocks        = 50
	MaxSectionText   = 3000
	MaxHeaderText    = 150
	MaxButtonText    = 75
	MaxButtonValue   = 2000
	MaxActionID      = 255
	MaxBlockID       = 255
	MaxContextItems  = 10
	MaxActionsItems  = 25
	MaxFallbackText  = 40000
	MaxSectionFields = 10
)

type textObj struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji *bool  `json:"emoji"`
}

type element struct {
	Type     string           `json:"type"`
	Text     json.RawMessage  `json:"text"`
	ActionID string           `json:"action_id"`
	Value    string           `json:"value"`
	Style    string           `json:"style"`
	Confirm  *json.RawMessage `json:"confirm"`
}

type block struct {
	Type     string            `json:"type"`
	BlockID  string            `json:"block_id"`
	Text     *textObj          `json:"text"`
	Fields   []textObj         `json:"fields"`
	Elements []json.RawMessage `json:"elements"`
}

// ValidateMessage checks a message the way Slack does before showing it:
// the fallback text (always required by linkbot, since notifications and
// screen readers use it) and every Block Kit limit linkbot can hit.
func ValidateMessage(text string, blocks json.RawMessage) error {
	if text == "" {
		return fmt.Errorf("no fallback text")
	}
	if utf8.RuneCountInString(text) > MaxFallbackText {
		return fmt.Errorf("fallback text too long")
	}
	_, err := validateBlocks(blocks, MaxBlocks, false)
	return err
}

// validateBlocks checks a message's blocks (at most max), or a modal's
// (modal: input blocks allowed); it returns how many input blocks there are.
func validateBlocks(blocks json.RawMessage, max int, modal bool) (inputs int, _ error) {
	if len(blocks) == 0 || string(blocks) == "null" {
		return 0, nil
	}
	var list []block
	if err := json.Unmarshal(blocks, &list); err != nil {
		return 0, fmt.Errorf("blocks: %v", err)
	}
	if len(list) > max {
		return 0, fmt.Errorf("%d blocks (max %d)", len(list), max)
	}
	var raws []json.RawMessage
	json.Unmarshal(blocks, &raws)
	blockIDs := map[string]bool{}
	actionIDs := map[string]bool{}
	for i, b := range list {
		if b.BlockID != "" {
			if blockIDs[b.BlockID] {
				return 0, fmt.Errorf("block %d: duplicate block_id %q", i, b.BlockID)
			}
			if len(b.BlockID) > MaxBlockID {
				return 0, fmt.Errorf("block %d: block_id too long", i)
			}
			blockIDs[b.BlockID] = true
		}
		switch b.Type {
		case "header":
			if b.Text == nil || b.Text.Type != "plain_text" {
				return 0, fmt.Errorf("block %d: header text must be plain_text", i)
			}
			if n := utf8.RuneCountInString(b.Text.Text); n == 0 || n > MaxHeaderText {
				return 0, fmt.Errorf("block %d: header text has %d characters (1..%d)", i, n, MaxHeaderText)
			}
		case "section":
			if b.Text == nil && len(b.Fields) == 0 {
				return 0, fmt.Errorf("block %d: section without text or fields", i)
			}
			if b.Text != nil {
				if err := checkText(b.Text, MaxSectionText); err != nil {
					return 0, fmt.Errorf("block %d: %v", i, err)
				}
			}
			if len(b.Fields) > MaxSectionFields {
				return 0, fmt.Errorf("block %d: %d fields", i, len(b.Fields))
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > MaxContextItems {
				return 0, fmt.Errorf("block %d: context has %d elements (1..%d)", i, len(b.Elements), MaxContextItems)
			}
			for _, raw := range b.Elements {
				var t textObj
				if err := json.Unmarshal(raw, &t); err != nil || (t.Type != "mrkdwn" && t.Type != "plain_text") {
					return 0, fmt.Errorf("block %d: context element must be text", i)
				}
				if err := checkText(&t, MaxSectionText); err != nil {
					return 0, fmt.Errorf("block %d: %v", i, err)
				}
			}
		case "actions":
			if len(b.Elements) == 0 || len(b.Elements) > MaxActionsItems {
				return 0, fmt.Errorf("block %d: actions has %d elements (1..%d)", i, len(b.Elements), MaxActionsItems)
			}
			for _, raw := range b.Elements {
				var e element
				if err := json.Unmarshal(raw, &e); err != nil || e.Type != "button" {
					return 0, fmt.Errorf("block %d: unsupported element", i)
				}
				var t textObj
				if err := json.Unmarshal(e.Text, &t); err != nil || t.Type != "plain_text" {
					return 0, fmt.Errorf("block %d: button text must be plain_text", i)
				}
				if n := utf8.RuneCountInString(t.Text); n == 0 || n > MaxButtonText {
					return 0, fmt.Errorf("block %d: button text has %d characters (1..%d)", i, n, MaxButtonText)
				}
				if e.ActionID == "" || len(e.ActionID) > MaxActionID {
					return 0, fmt.Errorf("block %d: button needs an action_id of at most %d characters", i, MaxActionID)
				}
				if actionIDs[e.ActionID] {
					return 0, fmt.Errorf("block %d: duplicate action_id %q", i, e.ActionID)
				}
				actionIDs[e.ActionID] = true
				if len(e.Value) > MaxButtonValue {
					return 0, fmt.Errorf("block %d: button value too long", i)
				}
				if e.Style != "" && e.Style != "primary" && e.Style != "danger" {
					return 0, fmt.Errorf("block %d: bad button style %q", i, e.Style)
				}
			}
		case "divider":
		case "input":
			if !modal {
				return 0, fmt.Errorf("block %d: input blocks are for modals", i)
			}
			if _, err := validateInput(raws[i]); err != nil {
				return 0, fmt.Errorf("block %d: %v", i, err)
			}
			inputs++
		default:
			return 0, fmt.Errorf("block %d: unsupported type %q", i, b.Type)
		}
	}
	return inputs, nil
}

func checkText(t *textObj, max int) error {
	if t.Type != "mrkdwn" && t.Type != "plain_text" {
		return fmt.Errorf("text type %q", t.Type)
	}
	if n := utf8.RuneCountInString(t.Text); n == 0 || n > max {
		return fmt.Errorf("text has %d characters (1..%d)", n, max)
	}
	return nil
}
