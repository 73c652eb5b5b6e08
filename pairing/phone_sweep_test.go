package pairing

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// sweepTypes are the number types whose example numbers the sweep dials:
// the ones a WhatsApp account can live on.
var sweepTypes = []phonenumbers.PhoneNumberType{
	phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.VOIP,
	phonenumbers.PERSONAL_NUMBER, phonenumbers.UAN, phonenumbers.PAGER,
}

// sweepDestinations is how many other regions' numbers each region dials
// (besides its own); every region is dialled from that many others. Under
// the race detector (about twenty times slower here) one region's first
// example is enough: every region still dials its own numbers in every form
// and a foreign one through each of its international prefixes.
func sweepDestinations() int {
	if raceEnabled {
		return 1
	}
	return 6
}

// TestNormalizePhoneAgreesWithLibphonenumber dials from every supported
// region: its own example numbers in national form, and example numbers of
// its own and of other regions written the way a local dials abroad (each
// of the region's international prefixes, then the country code), and with
// "+". For every input, what the bot makes of it (with that region) is
// compared with libphonenumber's own parse: no different number, no refusal
// of a number libphonenumber reads as valid, and nothing accepted that it
// reads as invalid. Issue 7: with region NG, "009 1 718 555 1234" (New
// York) became +91 …, a valid Indian mobile.
func TestNormalizePhoneAgreesWithLibphonenumber(t *testing.T) {
	meta := regionMetadata(t)
	regions := slices.Sorted(func(yield func(string) bool) {
		for r := range phonenumbers.GetSupportedRegions() {
			if !yield(r) {
				return
			}
		}
	})
	examples := map[string][]*phonenumbers.PhoneNumber{}
	for _, r := range regions {
		for _, typ := range sweepTypes {
			if n := phonenumbers.GetExampleNumberForType(r, typ); n != nil {
				examples[r] = append(examples[r], n)
			}
		}
		if len(examples[r]) == 0 {
			t.Errorf("region %s has no example number", r)
		}
	}
	var inputs, different, refused, invalidAccepted atomic.Int64
	t.Run("from", func(t *testing.T) {
		for i, from := range regions {
			dests := []string{from}
			for k := 1; k <= sweepDestinations(); k++ {
				dests = append(dests, regions[(i+k*(len(regions)/sweepDestinations()+1))%len(regions)])
			}
			t.Run(from, func(t *testing.T) {
				t.Parallel()
				idds := internationalPrefixes(t, meta[from])
				if len(idds) == 0 {
					t.Fatalf("no international prefix found in %q", meta[from].GetInternationalPrefix())
				}
				var dialled []string
				var pool []*phonenumbers.PhoneNumber
				for k, to := range dests {
					ns := examples[to]
					if k > 0 && raceEnabled {
						ns = ns[:1]
					}
					for _, n := range ns {
						dialled = append(dialled, dialForms(n, from, idds)...)
						pool = append(pool, n)
					}
				}
				// Every international prefix of the region, each with one
				// number (Singapore has 40, Chile and Korea a dozen or more).
				for j, idd := range idds[1:] {
					n := pool[j%len(pool)]
					dialled = append(dialled, fmt.Sprintf("%s %d %s", idd, n.GetCountryCode(), nationalPart(n)))
				}
				slices.Sort(dialled)
				dialled = slices.Compact(dialled)
				inputs.Add(int64(len(dialled)))
				shown := 0
				report := func(kind *atomic.Int64, format string, args ...any) {
					kind.Add(1)
					if shown++; shown <= 3 {
						t.Errorf(format, args...)
					} else {
						t.Fail()
					}
				}
				for _, input := range dialled {
					want, werr := phonenumbers.Parse(input, from)
					valid := werr == nil && phonenumbers.IsValidNumber(want)
					got, err := NormalizePhone(input, from)
					switch {
					case valid && err != nil:
						report(&refused, "%q refused (%v); libphonenumber reads %s", input, err, phonenumbers.Format(want, phonenumbers.E164))
					case valid && got.Digits != digitsOf(want):
						report(&different, "%q read as +%s; libphonenumber reads %s", input, got.Digits, phonenumbers.Format(want, phonenumbers.E164))
					case !valid && err == nil:
						report(&invalidAccepted, "%q accepted as +%s; libphonenumber reads no valid number", input, got.Digits)
					}
				}
			})
		}
	})
	t.Logf("%d regions, %d inputs: %d read as another number, %d refused, %d accepted that libphonenumber refuses",
		len(regions), inputs.Load(), different.Load(), refused.Load(), invalidAccepted.Load())
}

// dialForms writes n the ways someone in region from would type it: with
// "+", as libphonenumber formats it for calling from there, in national form
// when n shares from's country code, and after the region's first
// international prefix, spaced and not.
func dialForms(n *phonenumbers.PhoneNumber, from string, idds []string) []string {
	cc := int(n.GetCountryCode())
	forms := []string{phonenumbers.Format(n, phonenumbers.INTERNATIONAL)}
	// The Go port writes a region's prefix pattern as it is ("0[01]",
	// "00|99") when it has no single prefix: nobody types that.
	if out := phonenumbers.FormatOutOfCountryCallingNumber(n, from); !strings.ContainsAny(out, "[]|?\\") {
		forms = append(forms, out)
	}
	if cc == phonenumbers.GetCountryCodeForRegion(from) {
		forms = append(forms, phonenumbers.Format(n, phonenumbers.NATIONAL))
	}
	if len(idds) > 0 {
		forms = append(forms,
			fmt.Sprintf("%s %d %s", idds[0], cc, nationalPart(n)),
			fmt.Sprintf("%s%d%s", idds[0], cc, phonenumbers.GetNationalSignificantNumber(n)))
	}
	return forms
}

// nationalPart is n's international format without "+" and country code.
func nationalPart(n *phonenumbers.PhoneNumber) string {
	intl := phonenumbers.Format(n, phonenumbers.INTERNATIONAL)
	return strings.TrimPrefix(intl, "+"+strconv.Itoa(int(n.GetCountryCode()))+" ")
}

func digitsOf(n *phonenumbers.PhoneNumber) string {
	return strconv.Itoa(int(n.GetCountryCode())) + phonenumbers.GetNationalSignificantNumber(n)
}

func regionMetadata(t *testing.T) map[string]*phonenumbers.PhoneMetadata {
	t.Helper()
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*phonenumbers.PhoneMetadata{}
	for _, md := range coll.GetMetadata() {
		m[md.GetId()] = md
	}
	return m
}

// internationalPrefixes lists every international (IDD) prefix a region's
// pattern allows, e.g. Brazil's "00(?:1[245]|…)" gives 0012, 0014, …, and
// the preferred one as written (Russia's "8~10": "~" waits for a tone).
func internationalPrefixes(t *testing.T, md *phonenumbers.PhoneMetadata) []string {
	t.Helper()
	re, err := syntax.Parse(md.GetInternationalPrefix(), syntax.Perl)
	if err != nil {
		t.Fatalf("%s: %v", md.GetId(), err)
	}
	all, err := language(re.Simplify())
	if err != nil {
		t.Fatalf("%s: international prefix %q: %v", md.GetId(), md.GetInternationalPrefix(), err)
	}
	if p := md.GetPreferredInternationalPrefix(); p != "" && !slices.Contains(all, p) {
		all = append(all, p)
	}
	return all
}

// language lists the strings a finite regular expression matches.
func language(re *syntax.Regexp) ([]string, error) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return []string{""}, nil
	case syntax.OpLiteral:
		return []string{string(re.Rune)}, nil
	case syntax.OpCharClass:
		var out []string
		for i := 0; i < len(re.Rune); i += 2 {
			if re.Rune[i+1]-re.Rune[i] > 100 {
				return nil, fmt.Errorf("class %s is too wide", re)
			}
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				out = append(out, string(r))
			}
		}
		return out, nil
	case syntax.OpCapture:
		return language(re.Sub[0])
	case syntax.OpQuest:
		sub, err := language(re.Sub[0])
		return append([]string{""}, sub...), err
	case syntax.OpRepeat:
		if re.Max < 0 {
			return nil, fmt.Errorf("unbounded %s", re)
		}
		sub, err := language(re.Sub[0])
		if err != nil {
			return nil, err
		}
		var out []string
		level := []string{""}
		for n := 0; n <= re.Max; n++ {
			if n >= re.Min {
				out = append(out, level...)
			}
			var next []string
			for _, a := range level {
				for _, b := range sub {
					next = append(next, a+b)
				}
			}
			level = next
		}
		return out, nil
	case syntax.OpConcat:
		out := []string{""}
		for _, s := range re.Sub {
			sub, err := language(s)
			if err != nil {
				return nil, err
			}
			var next []string
			for _, a := range out {
				for _, b := range sub {
					next = append(next, a+b)
				}
			}
			out = next
		}
		return out, nil
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			sub, err := language(s)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported %s", re)
}
