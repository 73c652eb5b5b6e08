package pairing

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/nyaruka/phonenumbers"
)

func TestNormalizePhone(t *testing.T) {
	tests := []struct {
		input, region string
		want          Phone
		problem       PhoneProblem
	}{
		// Egypt
		{"+20 111 222 3333", "", Phone{Digits: "201112223333", International: "+20 11 12223333", Region: "EG"}, ""},
		{"01112223333", "EG", Phone{Digits: "201112223333", International: "+20 11 12223333", Region: "EG"}, ""},
		{"0111-222-3333", "eg", Phone{Digits: "201112223333", International: "+20 11 12223333", Region: "EG"}, ""},
		{"00201112223333", "", Phone{Digits: "201112223333", International: "+20 11 12223333", Region: "EG"}, ""},
		{"(0111) 222.3333", "EG", Phone{Digits: "201112223333", International: "+20 11 12223333", Region: "EG"}, ""},
		{"+201012345678", "GB", Phone{Digits: "201012345678", International: "+20 10 12345678", Region: "EG"}, ""},
		{"0111 222 33", "EG", Phone{}, PhoneInvalid},
		// United Kingdom
		{"+44 7400 123456", "", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		{"07400 123456", "GB", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		{"0044 (0)7400-123456", "", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		{"0044 7400 123456", "", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		// United States
		{"+1 (415) 555-2671", "", Phone{Digits: "14155552671", International: "+1 415-555-2671", Region: "US"}, ""},
		{"415.555.2671", "US", Phone{Digits: "14155552671", International: "+1 415-555-2671", Region: "US"}, ""},
		{"+1 415 555 267", "", Phone{}, PhoneTooShort},
		// Germany
		{"+49 151 23456789", "", Phone{Digits: "4915123456789", International: "+49 1512 3456789", Region: "DE"}, ""},
		{"0151 23456789", "DE", Phone{Digits: "4915123456789", International: "+49 1512 3456789", Region: "DE"}, ""},
		// India
		{"+91 98765 43210", "", Phone{Digits: "919876543210", International: "+91 98765 43210", Region: "IN"}, ""},
		{"098765 43210", "IN", Phone{Digits: "919876543210", International: "+91 98765 43210", Region: "IN"}, ""},
		// Brazil
		{"+55 11 96123-4567", "", Phone{Digits: "5511961234567", International: "+55 11 96123-4567", Region: "BR"}, ""},
		{"(11) 96123-4567", "BR", Phone{Digits: "5511961234567", International: "+55 11 96123-4567", Region: "BR"}, ""},
		// Saudi Arabia
		{"+966 50 123 4567", "", Phone{Digits: "966501234567", International: "+966 50 123 4567", Region: "SA"}, ""},
		{"050 123 4567", "SA", Phone{Digits: "966501234567", International: "+966 50 123 4567", Region: "SA"}, ""},
		// Nigeria
		{"+234 802 123 4567", "", Phone{Digits: "2348021234567", International: "+234 802 123 4567", Region: "NG"}, ""},
		{"0802 123 4567", "NG", Phone{Digits: "2348021234567", International: "+234 802 123 4567", Region: "NG"}, ""},
		// France
		{"+33 6 12 34 56 78", "", Phone{Digits: "33612345678", International: "+33 6 12 34 56 78", Region: "FR"}, ""},
		{"06 12 34 56 78", "FR", Phone{Digits: "33612345678", International: "+33 6 12 34 56 78", Region: "FR"}, ""},
		// Indonesia
		{"+62 812-3456-7890", "", Phone{Digits: "6281234567890", International: "+62 812-3456-7890", Region: "ID"}, ""},
		// International prefixes other than 00 (issue 7): libphonenumber
		// strips the region's own; 00 means + only when no region is known.
		{"009 1 718 555 1234", "NG", Phone{Digits: "17185551234", International: "+1 718-555-1234", Region: "US"}, ""},
		{"0011 44 7400 123456", "AU", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		{"0014 508 43 01 23", "AU", Phone{Digits: "508430123", International: "+508 43 01 23", Region: "PM"}, ""},
		{"000 44 7400 123456", "KE", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		{"001 44 7400 123456", "MN", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		{"001 44 7400 123456", "GY", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		{"011 44 7400 123456", "US", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		{"0044 7400 123456", "EG", Phone{Digits: "447400123456", International: "+44 7400 123456", Region: "GB"}, ""},
		{"0044 7400 123456", "US", Phone{}, PhoneTooLong}, // 011 dials out of the US
		// Problems
		{"", "EG", Phone{}, PhoneEmpty},
		{"   ", "EG", Phone{}, PhoneEmpty},
		{"+", "", Phone{}, PhoneEmpty},
		{"+20 CALL NOW", "", Phone{}, PhoneLetters},
		{"1-800-FLOWERS", "US", Phone{}, PhoneLetters},
		{"+20#111*222", "", Phone{}, PhoneBadCharacters},
		{"+20 111 <!here>", "", Phone{}, PhoneBadCharacters},
		{"01112223333", "", Phone{}, PhoneNoCountryCode},
		{"+999 1234 5678", "", Phone{}, PhoneBadCountryCode},
		{"+20 1", "", Phone{}, PhoneTooShort},
		{"12", "EG", Phone{}, PhoneTooShort},
		{"+20 1112223333444455556666", "", Phone{}, PhoneTooLong},
		{strings.Repeat("1", 60), "EG", Phone{}, PhoneTooLong},
		// libphonenumber accepts German numbers longer than E.164's 15 digits.
		{"0201 00000000000", "DE", Phone{}, PhoneTooLong},
		{"+49 201 00000000000", "", Phone{}, PhoneTooLong},
		{"+2+01112223333", "", Phone{}, PhoneBadCharacters},
	}
	for _, tt := range tests {
		t.Run(tt.region+" "+tt.input, func(t *testing.T) {
			got, err := NormalizePhone(tt.input, tt.region)
			var perr *PhoneError
			if tt.problem != "" {
				if !errors.As(err, &perr) || perr.Problem != tt.problem {
					t.Fatalf("NormalizePhone(%q, %q) = %+v, %v; want problem %s", tt.input, tt.region, got, err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizePhone(%q, %q): %v", tt.input, tt.region, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NormalizePhone(%q, %q) (-want +got):\n%s", tt.input, tt.region, diff)
			}
		})
	}
}

// TestMaskPhone: at least half of the national digits, and at least 4,
// are hidden, for numbers of every length in several regions; what is
// shown is the start and the end of the national number.
func TestMaskPhone(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"+20 11 12223333", "+20 11 ••• 333"},     // Egypt, 10 digits
		{"+44 7400 123456", "+44 74 ••• 456"},     // UK mobile, 10
		{"+1 415-555-2671", "+1 41 ••• 671"},      // NANP, 10
		{"+33 6 12 34 56 78", "+33 61 ••• 78"},    // France, 9
		{"+49 1512 3456789", "+49 15 ••• 789"},    // Germany, 11
		{"+86 138 0013 8000", "+86 13 ••• 000"},   // China, 11
		{"+91 98765 43210", "+91 98 ••• 210"},     // India, 10
		{"+39 312 345 678901", "+39 312 ••• 901"}, // Italy, 12
		{"+354 611 1234", "+354 6 ••• 34"},        // Iceland, 7
		{"+683 4002", "+683 ••••"},                // Niue, 4
		{"+290 22001", "+290 ••• 1"},              // Saint Helena, 5
		{"+2012", "+••••"},
		{"+", "+"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := MaskPhone(tt.in)
			if got != tt.want {
				t.Errorf("MaskPhone(%q) = %q, want %q", tt.in, got, tt.want)
			}
			_, national, ok := strings.Cut(strings.TrimPrefix(tt.in, "+"), " ")
			if !ok {
				national = strings.TrimPrefix(tt.in, "+")
			}
			digits := strings.Count(strings.Map(func(r rune) rune {
				if r >= '0' && r <= '9' {
					return 'd'
				}
				return -1
			}, national), "d")
			_, maskedNational, _ := strings.Cut(strings.TrimPrefix(got, "+"), " ")
			if !ok {
				maskedNational = strings.TrimPrefix(got, "+")
			}
			shown := 0
			for _, r := range maskedNational {
				if r >= '0' && r <= '9' {
					shown++
				}
			}
			if hidden := digits - shown; digits > 0 && (hidden < 4 && hidden < digits || 2*hidden < digits) {
				t.Errorf("MaskPhone(%q) = %q hides %d of %d national digits, want at least half and at least 4", tt.in, got, hidden, digits)
			}
		})
	}
}

func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{"+20 111 222 3333", "01112223333", "00201112223333", "(0111) 222.3333", "+", "0", "1-800-FLOWERS", "+2+0",
		"٠١١١–٢٢٢–٣٣٣٣", "＋２０ １１１ ２２２ ３３３３", "\u200e+20\u2009111\u00a0222\u200b3333\u200e", "tel:+20-111-222-3333", "0111/222/3333 ext. 89"} {
		f.Add(s, "EG")
	}
	for _, seed := range [][2]string{
		{"009 1 718 555 1234", "NG"}, {"0011 44 7400 123456", "AU"}, {"000 44 7400 123456", "KE"}, {"001 976 8812 3456", "MN"},
		{"0014 508 43 01 23", "AU"}, {"8~10 1 201 555 0123", "RU"}, {"+1 (415) 555-2671 x89", "US"}, {"(415) 555-2671;ext=89", "us"},
		{"+7 495 123-45-67 ~ 12", ""}, {"0044 (0)7400-123456", ""}, {"++44 7400 123456", "GB"}, {"030 / 1234567", "DE"},
		{"03ー1234ー5678", "JP"}, {"۰۹۱۲ ۳۴۵ ۶۷۸۹", "IR"}, {"+999 1234 5678", "EG"}, {"011 39 06 1234 5678", "US"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, input, region string) {
		p := checkNormalized(t, input, region)
		agreeWithLibphonenumber(t, input, region, p)
		// What is left of the input in the characters a phone number is
		// written with must be read exactly as libphonenumber reads it.
		agreeWithLibphonenumber(t, phoneAlphabetOnly(input), region, checkNormalized(t, phoneAlphabetOnly(input), region))
	})
}

// checkNormalized checks what NormalizePhone makes of input: a *PhoneError,
// or E.164 digits that normalise to themselves.
func checkNormalized(t *testing.T, input, region string) *Phone {
	t.Helper()
	p, err := NormalizePhone(input, region)
	if err != nil {
		var perr *PhoneError
		if !errors.As(err, &perr) {
			t.Fatalf("error %v is not a *PhoneError", err)
		}
		return nil
	}
	if p.Digits == "" || strings.Trim(p.Digits, "0123456789") != "" || len(p.Digits) > 15 {
		t.Fatalf("Digits %q are not E.164 digits", p.Digits)
	}
	if strings.Trim(p.Extension, "0123456789") != "" {
		t.Fatalf("Extension %q is not digits", p.Extension)
	}
	// A normalised number normalises to itself.
	want := p
	want.Extension = ""
	again, err := NormalizePhone(p.International, "")
	if err != nil || again != want {
		t.Fatalf("re-normalising %q gave %+v, %v; want %+v", p.International, again, err, want)
	}
	return &p
}

// agreeWithLibphonenumber: if libphonenumber reads input as a valid number,
// so does the bot, with the same digits (issue 7). The bot refuses more on
// purpose, and says why: letters (vanity numbers; DESIGN.md), characters
// no phone number is written with, more than maxPhoneInput characters, a
// "+" followed by no country code (libphonenumber then drops the "+" and
// reads the rest as a national number), and more digits than E.164 allows.
func agreeWithLibphonenumber(t *testing.T, input, region string, got *Phone) {
	t.Helper()
	region = strings.ToUpper(strings.TrimSpace(region))
	num, err := phonenumbers.Parse(trimTrailingJunk(input), region)
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return
	}
	want := digitsOf(num)
	if len(want) > 15 {
		// More than E.164 allows (libphonenumber accepts some German
		// numbers that long); Wawp wants E.164 digits.
		if _, err := NormalizePhone(input, region); err == nil {
			t.Fatalf("NormalizePhone(%q, %q) accepted +%s, longer than E.164 allows", input, region, want)
		}
		return
	}
	if got != nil {
		if got.Digits != want {
			t.Fatalf("NormalizePhone(%q, %q) = +%s; libphonenumber reads +%s", input, region, got.Digits, want)
		}
		return
	}
	_, err = NormalizePhone(input, region)
	var perr *PhoneError
	errors.As(err, &perr)
	visible := utf8.RuneCountInString(strings.TrimSpace(strings.Map(plainRune, input)))
	switch {
	case perr.Problem == PhoneLetters && strings.IndexFunc(input, unicode.IsLetter) >= 0:
	case perr.Problem == PhoneBadCharacters && phoneAlphabetOnly(input) != input:
	case perr.Problem == PhoneTooLong && (visible > maxPhoneInput || utf8.RuneCountInString(input) > maxPhoneRunes):
	case perr.Problem == PhoneBadCountryCode && strings.HasPrefix(perr.Understood, "+") && noCountryCode(perr.Understood):
	default:
		t.Fatalf("NormalizePhone(%q, %q) refused (%s); libphonenumber reads +%s", input, region, perr.Problem, want)
	}
}

// trimTrailingJunk drops what trails a number that is neither a letter, a
// digit nor "#", as libphonenumber means to before it looks for an
// extension. The Go port's pattern for it ("[[\P{N}&&\P{L}]&&[^#]]+$")
// uses Java's class intersection, which Go's regexp reads as something
// else that never matches, so "+1 415 555 2671 x89 " would keep its "x"
// as a stray letter and its 89 as part of the number.
func trimTrailingJunk(s string) string {
	return strings.TrimRightFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != '#' })
}

func noCountryCode(international string) bool {
	_, err := phonenumbers.Parse(international, "")
	return err == phonenumbers.ErrInvalidCountryCode
}

// notInPhoneAlphabet reports whether r is none of what a phone number is
// written with: a digit of any script, "+", a space, dash or other
// separator, an invisible format character.
func notInPhoneAlphabet(r rune) bool {
	p := plainRune(r)
	return p != -1 && p != '+' && !(p >= '0' && p <= '9') && !isPhoneSeparator(p)
}

// phoneAlphabetOnly keeps the characters a phone number is written with,
// and "+" only before the first digit.
func phoneAlphabetOnly(s string) string {
	var b strings.Builder
	digits := false
	for _, r := range s {
		p := plainRune(r)
		switch {
		case notInPhoneAlphabet(r), p == '+' && digits:
			continue
		case p >= '0' && p <= '9':
			digits = true
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestNormalizePhoneForms: numbers as they arrive pasted from phones, web
// pages and other scripts (issue 7). libphonenumber reads these digits and
// separators; letters stay refused (vanity numbers), but an extension is
// left out and reported.
func TestNormalizePhoneForms(t *testing.T) {
	eg := Phone{Digits: "201112223333", International: "+20 11 12223333", Region: "EG"}
	us := Phone{Digits: "14155552671", International: "+1 415-555-2671", Region: "US"}
	usExt := us
	usExt.Extension = "89"
	tests := []struct {
		name, input, region string
		want                Phone
		problem             PhoneProblem
	}{
		// Digits in other scripts.
		{"Arabic-Indic digits", "+٢٠ ١١١ ٢٢٢ ٣٣٣٣", "", eg, ""},
		{"Arabic-Indic national", "٠١١١٢٢٢٣٣٣٣", "EG", eg, ""},
		{"Persian digits", "۰۹۱۲ ۳۴۵ ۶۷۸۹", "IR", Phone{Digits: "989123456789", International: "+98 912 345 6789", Region: "IR"}, ""},
		{"full-width", "＋２０ １１１ ２２２ ３３３３", "", eg, ""},
		{"full-width punctuation", "（０１１１）２２２－３３３３", "EG", eg, ""},
		{"Bengali digits", "০১৭১২-৩৪৫৬৭৮", "BD", Phone{Digits: "8801712345678", International: "+880 1712-345678", Region: "BD"}, ""},
		{"Devanagari digits", "+९१ ९८७६५ ४३२१०", "", Phone{Digits: "919876543210", International: "+91 98765 43210", Region: "IN"}, ""},
		// Dashes, slashes, spaces.
		{"en dash", "0111–222–3333", "EG", eg, ""},
		{"em dash", "+20—111—222—3333", "", eg, ""},
		{"non-breaking hyphen", "0111‑222‑3333", "EG", eg, ""},
		{"minus sign", "0111−222−3333", "EG", eg, ""},
		{"katakana long mark", "03ー1234ー5678", "JP", Phone{Digits: "81312345678", International: "+81 3-1234-5678", Region: "JP"}, ""},
		{"slash", "030/1234567", "DE", Phone{Digits: "49301234567", International: "+49 30 1234567", Region: "DE"}, ""},
		{"thin spaces", "+20\u2009111\u2009222\u20093333", "", eg, ""},
		{"narrow no-break spaces", "+20\u202f111\u202f222\u202f3333", "", eg, ""},
		{"no-break spaces", "+20\u00a0111\u00a0222\u00a03333", "", eg, ""},
		{"ideographic spaces", "+20\u3000111\u3000222\u30003333", "", eg, ""},
		{"tab", "+20\t111 222 3333", "", eg, ""},
		// Invisible format characters.
		{"left-to-right marks", "\u200e+20 111 222 3333\u200e", "", eg, ""},
		{"bidi embedding", "\u202a+20 111 222 3333\u202c", "", eg, ""},
		{"bidi isolate", "\u2066+20 111 222 3333\u2069", "", eg, ""},
		{"zero-width spaces", "+20\u200b111\u200b222\u200b3333", "", eg, ""},
		{"word joiners", "+20\u2060111\u2060222\u20603333", "", eg, ""},
		{"byte order mark", "\ufeff+201112223333", "", eg, ""},
		{"soft hyphens", "0111\u00ad222\u00ad3333", "EG", eg, ""},
		{"Arabic letter mark", "\u061c٠١١١٢٢٢٣٣٣٣", "EG", eg, ""},
		// tel: URIs.
		{"tel:", "tel:+201112223333", "", eg, ""},
		{"TEL: spaced", "TEL: +20-111-222-3333", "", eg, ""},
		{"tel: national", "tel:01112223333", "EG", eg, ""},
		// Extensions are left out, and said so.
		{"x", "+1 415 555 2671 x89", "", usExt, ""},
		{"x no space", "(415) 555-2671x89", "US", usExt, ""},
		{"ext.", "+1 (415) 555-2671 ext. 89", "", usExt, ""},
		{"extension", "+1 415 555 2671 extension 89", "", usExt, ""},
		{";ext=", "+1-415-555-2671;ext=89", "", usExt, ""},
		{"tel: with ;ext=", "tel:+1-415-555-2671;ext=89", "", usExt, ""},
		{"auto-dial commas", "+1 415 555 2671,,89", "", usExt, ""},
		{"trailing dot", "+1 415 555 2671 ext. 89.", "", usExt, ""},
		// Length counts characters, not bytes.
		{"40 characters", "＋２０ １１１ ２２２ ３３３３" + strings.Repeat(" ", 20) + "－－－－", "", eg, ""},
		{"41 characters", "+20 111 222 3333" + strings.Repeat("-", 25), "", Phone{}, PhoneTooLong},
		{"invisible characters do not count", strings.Repeat("\u200e", 60) + "+20 111 222 3333", "", eg, ""},
		// Still refused.
		{"vanity", "1-800-FLOWERS", "US", Phone{}, PhoneLetters},
		{"vanity with extension", "+1 415 555 HELP x89", "", Phone{}, PhoneLetters},
		{"letters in the extension", "+1 415 555 2671 ext. 8a", "", Phone{}, PhoneLetters},
		{"extension alone", "ext. 89", "US", Phone{}, PhoneLetters},
		{"x inside the number", "+20 111x222 3333", "", Phone{}, PhoneLetters},
		{"tel: alone", "tel:", "EG", Phone{}, PhoneEmpty},
		{"invisible only", "\u200e\u200b", "EG", Phone{}, PhoneEmpty},
		{"plus inside", "+20 111 +222 3333", "", Phone{}, PhoneBadCharacters},
		{"star", "+20 111*222 3333", "", Phone{}, PhoneBadCharacters},
		{"hash inside", "+20 111#222 3333", "", Phone{}, PhoneBadCharacters},
		{"mention", "+20 111 <@U123>", "", Phone{}, PhoneBadCharacters},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePhone(tt.input, tt.region)
			var perr *PhoneError
			if tt.problem != "" {
				if !errors.As(err, &perr) || perr.Problem != tt.problem {
					t.Fatalf("NormalizePhone(%q, %q) = %+v, %v; want problem %s", tt.input, tt.region, got, err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizePhone(%q, %q): %v", tt.input, tt.region, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NormalizePhone(%q, %q) (-want +got):\n%s", tt.input, tt.region, diff)
			}
		})
	}
}

// TestDigitValue: every decimal digit of every script reads as its value.
// digitValue relies on Unicode keeping each script's digits in runs from 0
// to 9; this checks that for the Unicode version Go ships, and that the
// digits libphonenumber maps itself read the same.
func TestDigitValue(t *testing.T) {
	for _, rg := range unicode.Nd.R16 {
		checkDigitRun(t, rune(rg.Lo), rune(rg.Hi), rune(rg.Stride))
	}
	for _, rg := range unicode.Nd.R32 {
		checkDigitRun(t, rune(rg.Lo), rune(rg.Hi), rune(rg.Stride))
	}
	for _, s := range []string{"٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "０１２３４５６７８９", "०१२३४५६७८९", "০১২৩৪৫৬৭৮৯", "๐๑๒๓๔๕๖๗๘๙"} {
		if got := strings.Map(plainRune, s); got != "0123456789" {
			t.Errorf("%s reads as %s", s, got)
		}
		if got := phonenumbers.NormalizeDigitsOnly(s); got != "0123456789" && got != s {
			t.Errorf("libphonenumber reads %s as %s", s, got)
		}
	}
}

func checkDigitRun(t *testing.T, lo, hi, stride rune) {
	t.Helper()
	if stride != 1 || unicode.IsDigit(lo-1) {
		t.Fatalf("digits %U–%U (stride %d) are not one run", lo, hi, stride)
	}
	if (hi-lo+1)%10 != 0 {
		t.Errorf("digits %U–%U are not whole runs of ten", lo, hi)
	}
	for r := lo; r <= hi; r++ {
		if got, want := digitValue(r), (r-lo)%10; got != want {
			t.Errorf("digitValue(%U) = %d, want %d", r, got, want)
		}
	}
}
