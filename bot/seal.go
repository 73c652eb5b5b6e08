package bot

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// A view's private_metadata goes to the person's Slack client with the
// view (views.open's payload, and back in view_submission), where anyone
// with the client's developer tools can read it; it is not a place for a
// credential (https://api.slack.com/reference/surfaces/views: "a string
// that will be sent to your app in view_submission and block_actions
// events"). The form needs the command's response_url after the
// submission, and replicas may answer the submission on another process,
// so it stays in the metadata, sealed: AES-GCM under a key derived from
// the bot token, which every replica has and no Slack client sees.

// sealer seals and opens what the bot alone may read back.
type sealer struct{ aead cipher.AEAD }

// newSealer is a sealer keyed by secret (the bot token: the key is a hash
// of it, so the token itself is in no view).
func newSealer(secret string) sealer {
	key := sha256.Sum256([]byte("linkbot private_metadata v1\x00" + secret))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return sealer{aead: aead}
}

// seal is plain encrypted and authenticated, as base64 ("" stays "").
func (s sealer) seal(plain string) string {
	if plain == "" {
		return ""
	}
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(plain), nil))
}

// errUnsealed means a sealed value was not sealed by this bot's key (a
// token rotated while the form was open, or a forged metadata).
var errUnsealed = errors.New("sealed value does not open with this bot's key")

// open is seal undone.
func (s sealer) open(sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return "", errUnsealed
	}
	plain, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], nil)
	if err != nil {
		return "", errUnsealed
	}
	return string(plain), nil
}
