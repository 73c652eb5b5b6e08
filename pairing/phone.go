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
}

// Masked is the number for logs and the audit trail: "+20 111 ••• 3333".
func (p Phone) Masked() string { return MaskPhone(p.International) }

// MaskPhone hides the middle digits of an internationally formatted
// number so logs identify a number without spelling it out:
// "+20 11 12223333" becomes "+20 111 ••• 3333".
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
	head, tail := 3, 4
	if len(national) < 9 {
		head, tail = 2, 2
	}
	if len(national) <= head+tail {
		return "+" + strings.TrimSpace(cc+" "+strings.Repeat("•", len(national)))
	}
	return "+" + strings.TrimSpace(cc+" "+national[:head]+" ••• "+national[len(national)-tail:])
}

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

// maxPhoneInput bounds what is parsed: the longest E.164 number has 15
// digits; generous room is left for separators.
const maxPhoneInput = 40

// NormalizePhone turns what an agent typed into a Phone, following Wawp's
// rules: spaces, dashes, dots and parentheses are dropped; a leading "+"
// means the country code follows, and so does region's own international
// prefix (libphonenumber knows each region's: 00, 009, 0011, 011, …), or
// "00" when no region is known; otherwise the number is national in region
// (its trunk "0" dropped). Letters are refused rather than mapped to
// digits as libphonenumber would (vanity numbers are never what was meant).
func NormalizePhone(input, region string) (Phone, error) {
	region = strings.ToUpper(strings.TrimSpace(region))
	input = strings.TrimSpace(input)
	fail := func(p PhoneProblem, understood string) (Phone, error) {
		return Phone{}, &PhoneError{Input: input, Region: region, Understood: understood, Problem: p}
	}
	if input == "" {
		return fail(PhoneEmpty, "")
	}
	if len(input) > maxPhoneInput {
		return fail(PhoneTooLong, "")
	}
	var b strings.Builder
	for i, r := range input {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && b.Len() == 0 && i == strings.IndexRune(input, '+'):
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')' || r == '\u00a0':
		case r == '~' || r == '\u2053' || r == '\u223c' || r == '\uff5e':
			// "wait for the dial tone" in an international prefix: Russia,
			// Belarus, Kazakhstan dial out with 8~10, Ukraine with 0~0.
		case unicode.IsLetter(r):
			return fail(PhoneLetters, "")
		default:
			return fail(PhoneBadCharacters, "")
		}
	}
	s := b.String()
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
	return Phone{
		Digits:        strconv.Itoa(int(num.GetCountryCode())) + phonenumbers.GetNationalSignificantNumber(num),
		International: understood,
		Region:        phonenumbers.GetRegionCodeForNumber(num),
	}, nil
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
