// Package pairing is the pairing domain: it normalises phone numbers, talks
// to Wawp (the only package that knows Wawp's URLs and JSON), enforces the
// limits that keep a phone out of WhatsApp's pairing lock-out, and runs a
// pairing from request to its final state.
package pairing

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// Phone is a normalised phone number.
type Phone struct {
	// Digits is what Wawp wants: country code first, digits only, no "+".
	Digits string
	// International is the number for people, e.g. "+20 111 222 3333".
	International string
	// Region is the ISO region the number belongs to, e.g. "EG".
	Region string
	// Extension is what was typed after the number as an extension
	// ("x89", "ext. 89", ";ext=89"): left out, since WhatsApp links a
	// number, not an extension; kept only to say so. Empty when none.
	Extension string
}

// Masked is the number for logs and the audit trail: "+20 11 ••• 333".
func (p Phone) Masked() string { return MaskPhone(p.International) }

// MaskPhone hides the middle digits of an internationally formatted
// number so logs, the audit trail and status cards identify a number
// without spelling it out: "+20 11 12223333" becomes "+20 11 ••• 333".
// At least half of the national digits, and at least 4, are hidden
// whatever the number's length (the few left are split between its start
// and its end); a national number of 4 digits or fewer is hidden whole.
// The country code stays: it says only where the number is from.
func MaskPhone(intl string) string {
	cc, national, ok := strings.Cut(strings.TrimPrefix(intl, "+"), " ")
	if !ok {
		cc, national = "", cc
	}
	national = strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, national)
	n := len(national)
	hidden := max(minHiddenDigits, (n+1)/2)
	if n <= hidden {
		return "+" + strings.TrimSpace(cc+" "+strings.Repeat("•", n))
	}
	shown := n - hidden
	tail := (shown + 1) / 2
	head := shown - tail
	return "+" + strings.TrimSpace(cc+" "+strings.TrimSpace(national[:head]+" ••• "+national[n-tail:]))
}

// minHiddenDigits is the fewest national digits MaskPhone hides.
const minHiddenDigits = 4

// PhoneProblem says what is wrong with a phone number.
type PhoneProblem string

const (
	PhoneEmpty          PhoneProblem = "empty"
	PhoneLetters        PhoneProblem = "letters"
	PhoneBadCharacters  PhoneProblem = "bad_characters"
	PhoneNoCountryCode  PhoneProblem = "no_country_code"
	PhoneBadCountryCode PhoneProblem = "bad_country_code"
	PhoneTooShort       PhoneProblem = "too_short"
	PhoneTooLong        PhoneProblem = "too_long"
	PhoneInvalid        PhoneProblem = "invalid"
)

// PhoneError is returned by NormalizePhone for input that is not a valid
// phone number. Understood is what libphonenumber made of it, if anything.
type PhoneError struct {
	Input      string
	Region     string
	Understood string
	Problem    PhoneProblem
}

func (e *PhoneError) Error() string {
	return fmt.Sprintf("phone %q (region %q): %s", e.Input, e.Region, e.Problem)
}

// maxPhoneInput bounds what is parsed, in characters, not bytes ("＋２０"
// is 3 characters, 9 bytes): the longest E.164 number has 15 digits, and
// room is left for separators, "tel:" and an extension. Invisible format
// characters do not count, but no input may have more than maxPhoneRunes.
const (
	maxPhoneInput = 40
	maxPhoneRunes = 4 * maxPhoneInput
)

// NormalizePhone turns what an agent typed into a Phone, following Wawp's
// rules: spaces, dashes, dots, slashes and parentheses are dropped; a
// leading "+" means the country code follows, and so does region's own
// international prefix (libphonenumber knows each region's: 00, 009, 0011,
// 011, …), or "00" when no region is known; otherwise the number is
// national in region (its trunk "0" dropped).
//
// It reads what people paste from phones and web pages as libphonenumber
// does: digits of any script (Arabic-Indic, Persian, full-width, …), any
// dash or space (en dash, no-break and thin spaces, …), invisible format
// characters (U+200E, U+200B, …), a "tel:" prefix. An extension ("x89",
// "ext. 89", ";ext=89") is left out and returned in Phone.Extension, so the
// agent can be told. Letters are refused rather than mapped to digits as
// libphonenumber would (vanity numbers are never what was meant).
func NormalizePhone(input, region string) (Phone, error) {
	region = strings.ToUpper(strings.TrimSpace(region))
	input = strings.TrimSpace(input)
	fail := func(p PhoneProblem, understood string) (Phone, error) {
		return Phone{}, &PhoneError{Input: input, Region: region, Understood: understood, Problem: p}
	}
	if utf8.RuneCountInString(input) > maxPhoneRunes {
		return fail(PhoneTooLong, "")
	}
	text := strings.TrimSpace(strings.Map(plainRune, input))
	if utf8.RuneCountInString(text) > maxPhoneInput {
		return fail(PhoneTooLong, "")
	}
	if len(text) >= 4 && strings.EqualFold(text[:4], "tel:") {
		text = strings.TrimSpace(text[4:]) // RFC 3966, e.g. tel:+1-201-555-0123;ext=89
	}
	// libphonenumber drops what trails the number before it looks for an
	// extension; its own extension patterns then find the extension.
	text = strings.TrimRightFunc(text, isPhoneSeparator)
	number, ext := phonenumbers.MaybeSeparateExtensionFromPhone(text)
	var b strings.Builder
	for _, r := range number {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && strings.Trim(b.String(), "+") == "":
			b.WriteRune(r) // "++20…" is read as "+20…", as libphonenumber does
		case isPhoneSeparator(r):
		case unicode.IsLetter(r):
			return fail(PhoneLetters, "")
		default:
			return fail(PhoneBadCharacters, "")
		}
	}
	s := b.String()
	if strings.HasPrefix(s, "+") {
		s = "+" + strings.TrimLeft(s, "+")
	}
	if strings.HasPrefix(s, "00") && !ValidRegion(region) {
		// With a region, libphonenumber strips that region's own
		// international prefix, which is not always 00 (Nigeria 009,
		// Australia 0011, Kenya 000, USA 011): reading 00 as "+" there
		// turns some numbers into other people's (issue 7). Without one,
		// 00 is the prefix most of the world dials.
		s = "+" + s[2:]
	}
	if strings.Trim(s, "+") == "" {
		return fail(PhoneEmpty, "")
	}
	if !strings.HasPrefix(s, "+") && region == "" {
		return fail(PhoneNoCountryCode, s)
	}
	parseRegion := region
	if strings.HasPrefix(s, "+") {
		parseRegion = ""
	}
	num, err := phonenumbers.Parse(s, parseRegion)
	if err != nil {
		switch err {
		case phonenumbers.ErrInvalidCountryCode:
			return fail(PhoneBadCountryCode, s)
		case phonenumbers.ErrTooShortNSN, phonenumbers.ErrTooShortAfterIDD, phonenumbers.ErrNotANumber:
			return fail(PhoneTooShort, s)
		case phonenumbers.ErrNumTooLong:
			return fail(PhoneTooLong, s)
		}
		return fail(PhoneInvalid, s)
	}
	understood := phonenumbers.Format(num, phonenumbers.INTERNATIONAL)
	if !phonenumbers.IsValidNumber(num) {
		switch phonenumbers.IsPossibleNumberWithReason(num) {
		case phonenumbers.TOO_SHORT:
			return fail(PhoneTooShort, understood)
		case phonenumbers.TOO_LONG:
			return fail(PhoneTooLong, understood)
		case phonenumbers.INVALID_COUNTRY_CODE:
			return fail(PhoneBadCountryCode, understood)
		}
		return fail(PhoneInvalid, understood)
	}
	digits := strconv.Itoa(int(num.GetCountryCode())) + phonenumbers.GetNationalSignificantNumber(num)
	if len(digits) > 15 {
		// E.164 allows 15 digits; libphonenumber accepts some longer
		// German numbers, which WhatsApp cannot have.
		return fail(PhoneTooLong, understood)
	}
	return Phone{
		Digits:        digits,
		International: understood,
		Region:        phonenumbers.GetRegionCodeForNumber(num),
		Extension:     ext,
	}, nil
}

// plainRune is the plain form of a rune of a typed or pasted number: any
// decimal digit becomes its ASCII digit, any space a space, any dash "-",
// full-width "+()[]./" their ASCII forms; invisible format characters
// (U+200E LEFT-TO-RIGHT MARK, U+200B ZERO WIDTH SPACE, U+FEFF, soft
// hyphens, bidi controls: category Cf) are dropped. Everything else is kept
// for the checks that follow.
func plainRune(r rune) rune {
	switch {
	case unicode.IsSpace(r):
		return ' '
	case r < 0x80:
		return r
	case unicode.Is(unicode.Cf, r):
		return -1
	case unicode.IsDigit(r):
		return '0' + digitValue(r)
	case unicode.Is(unicode.Pd, r), r == '\u2212', r == '\u30fc', r == '\uff70':
		// dashes, the minus sign, and the katakana long mark written as
		// a dash in Japanese numbers (libphonenumber reads it so too)
		return '-'
	case r >= '\uff01' && r <= '\uff5e' && strings.ContainsRune("+()[]./", r-0xfee0):
		return r - 0xfee0 // full-width forms
	}
	return r
}

// digitValue is the value of a decimal digit (Unicode category Nd) of any
// script. Unicode encodes every script's digits as a contiguous run from 0
// to 9 (some blocks hold several runs back to back), so the value is the
// distance from the start of the run of digits, modulo 10.
func digitValue(r rune) rune {
	start := r
	for unicode.IsDigit(start - 1) {
		start--
	}
	return (r - start) % 10
}

// isPhoneSeparator reports whether r (after plainRune) is a separator
// libphonenumber ignores between digits. "~" waits for the dial tone in an
// international prefix: Russia, Belarus, Kazakhstan dial out with 8~10.
func isPhoneSeparator(r rune) bool {
	return strings.ContainsRune(" -./()[]~\u2053\u223c\uff5e", r)
}

// PhoneFromDigits rebuilds a Phone from stored digits (country code first).
func PhoneFromDigits(digits string) Phone {
	p, err := NormalizePhone("+"+digits, "")
	if err != nil {
		return Phone{Digits: digits, International: "+" + digits}
	}
	return p
}

// ValidRegion reports whether region is an ISO region libphonenumber knows.
func ValidRegion(region string) bool {
	return phonenumbers.GetSupportedRegions()[region]
}

// RegionExample is an example number of region in international format,
// for messages that show how to write a number.
func RegionExample(region string) string {
	num := phonenumbers.GetExampleNumberForType(strings.ToUpper(region), phonenumbers.MOBILE)
	if num == nil {
		return "+20 111 222 3333"
	}
	return phonenumbers.Format(num, phonenumbers.INTERNATIONAL)
}
