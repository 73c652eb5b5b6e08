package pairing

// The QR fallback (issue 10), its model: when a code cannot do the job,
// the requester may get a hosted QR page from Wawp instead (temp-link;
// DESIGN.md "Wawp facts"). A QR pairing is a Pairing with Method MethodQR:
// it goes through the same states as a code (requesting, live, then
// linked, wrong_phone, expired, cancelled, failed…), holds its instance
// the same way (one live pairing per instance, code or QR), and its link
// is a credential like the code: kept in Link only while the pairing is
// live, wiped by the storage with the code. The service's side is in
// qrservice.go.

// Method is how a pairing links a phone.
type Method string

// Methods.
const (
	MethodCode Method = ""   // an 8-character pairing code (the default)
	MethodQR   Method = "qr" // a hosted QR page (Wawp's temp-link)
)

// WipeCredentials drops what would let someone link a phone to the
// instance: the code and the QR link. A storage calls it on every pairing
// that no longer holds its instance, and on any holder it hands out.
func (p *Pairing) WipeCredentials() { p.Code, p.Link = "", "" }

// qrKeyPrefix starts the key a QR link is counted under.
const qrKeyPrefix = "qr:"

// AttemptKey is what p's request is counted under in the first window of
// its Reservation (PhoneLimit): its phone's digits for a code; for a QR
// link "qr:" and its instance ID, since QR links are limited per instance
// and a link is no request for a code, so it never counts against
// WhatsApp's per-phone limit.
func (p Pairing) AttemptKey() string {
	if p.Method == MethodQR {
		return QRKey(p.Instance)
	}
	return p.Phone
}

// QRKey is the key QR links for instance are counted under (see
// AttemptKey), for NextAllowed.
func QRKey(instance string) string { return qrKeyPrefix + instance }

// KeyLimit is the limit the window of AttemptKey is: LimitQR for a QR
// link, LimitPhone for a code.
func (p Pairing) KeyLimit() Limit {
	if p.Method == MethodQR {
		return LimitQR
	}
	return LimitPhone
}
