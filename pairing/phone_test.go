package pairing

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizePhone(t *testing.T) {
	tests := []struct {
		input, region string
		want          Phone
		problem       PhoneProblem
	}{
		// Egypt
		{"+20 111 222 3333", "", Phone{"201112223333", "+20 11 12223333", "EG"}, ""},
		{"01112223333", "EG", Phone{"201112223333", "+20 11 12223333", "EG"}, ""},
		{"0111-222-3333", "eg", Phone{"201112223333", "+20 11 12223333", "EG"}, ""},
		{"00201112223333", "", Phone{"201112223333", "+20 11 12223333", "EG"}, ""},
		{"(0111) 222.3333", "EG", Phone{"201112223333", "+20 11 12223333", "EG"}, ""},
		{"+201012345678", "GB", Phone{"201012345678", "+20 10 12345678", "EG"}, ""},
		{"0111 222 33", "EG", Phone{}, PhoneInvalid},
		// United Kingdom
		{"+44 7400 123456", "", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
		{"07400 123456", "GB", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
		{"0044 (0)7400-123456", "", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
		{"0044 7400 123456", "", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
		// United States
		{"+1 (415) 555-2671", "", Phone{"14155552671", "+1 415-555-2671", "US"}, ""},
		{"415.555.2671", "US", Phone{"14155552671", "+1 415-555-2671", "US"}, ""},
		{"+1 415 555 267", "", Phone{}, PhoneTooShort},
		// Germany
		{"+49 151 23456789", "", Phone{"4915123456789", "+49 1512 3456789", "DE"}, ""},
		{"0151 23456789", "DE", Phone{"4915123456789", "+49 1512 3456789", "DE"}, ""},
		// India
		{"+91 98765 43210", "", Phone{"919876543210", "+91 98765 43210", "IN"}, ""},
		{"098765 43210", "IN", Phone{"919876543210", "+91 98765 43210", "IN"}, ""},
		// Brazil
		{"+55 11 96123-4567", "", Phone{"5511961234567", "+55 11 96123-4567", "BR"}, ""},
		{"(11) 96123-4567", "BR", Phone{"5511961234567", "+55 11 96123-4567", "BR"}, ""},
		// Saudi Arabia
		{"+966 50 123 4567", "", Phone{"966501234567", "+966 50 123 4567", "SA"}, ""},
		{"050 123 4567", "SA", Phone{"966501234567", "+966 50 123 4567", "SA"}, ""},
		// Nigeria
		{"+234 802 123 4567", "", Phone{"2348021234567", "+234 802 123 4567", "NG"}, ""},
		{"0802 123 4567", "NG", Phone{"2348021234567", "+234 802 123 4567", "NG"}, ""},
		// France
		{"+33 6 12 34 56 78", "", Phone{"33612345678", "+33 6 12 34 56 78", "FR"}, ""},
		{"06 12 34 56 78", "FR", Phone{"33612345678", "+33 6 12 34 56 78", "FR"}, ""},
		// Indonesia
		{"+62 812-3456-7890", "", Phone{"6281234567890", "+62 812-3456-7890", "ID"}, ""},
		// International prefixes other than 00 (issue 7): libphonenumber
		// strips the region's own; 00 means + only when no region is known.
		{"009 1 718 555 1234", "NG", Phone{"17185551234", "+1 718-555-1234", "US"}, ""},
		{"0011 44 7400 123456", "AU", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
		{"0014 508 43 01 23", "AU", Phone{"508430123", "+508 43 01 23", "PM"}, ""},
		{"000 44 7400 123456", "KE", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
		{"001 44 7400 123456", "MN", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
		{"001 44 7400 123456", "GY", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
		{"011 44 7400 123456", "US", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
		{"0044 7400 123456", "EG", Phone{"447400123456", "+44 7400 123456", "GB"}, ""},
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

func TestMaskPhone(t *testing.T) {
	tests := map[string]string{
		"+20 11 12223333":   "+20 111 ••• 3333",
		"+44 7400 123456":   "+44 740 ••• 3456",
		"+1 415-555-2671":   "+1 415 ••• 2671",
		"+33 6 12 34 56 78": "+33 612 ••• 5678",
		"+2012":             "+••••",
	}
	for in, want := range tests {
		if got := MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{"+20 111 222 3333", "01112223333", "00201112223333", "(0111) 222.3333", "+", "0", "1-800-FLOWERS", "+2+0"} {
		f.Add(s, "EG")
	}
	f.Fuzz(func(t *testing.T, input, region string) {
		p, err := NormalizePhone(input, region)
		if err != nil {
			var perr *PhoneError
			if !errors.As(err, &perr) {
				t.Fatalf("error %v is not a *PhoneError", err)
			}
			return
		}
		if p.Digits == "" || strings.Trim(p.Digits, "0123456789") != "" || len(p.Digits) > 15 {
			t.Fatalf("Digits %q are not E.164 digits", p.Digits)
		}
		// A normalised number normalises to itself.
		again, err := NormalizePhone(p.International, "")
		if err != nil || again != p {
			t.Fatalf("re-normalising %q gave %+v, %v; want %+v", p.International, again, err, p)
		}
	})
}
