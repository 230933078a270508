package attest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OIDCMW is id-pe-cmw (1.3.6.1.5.5.7.1.35), the X.509 extension that
// carries a RATS Conceptual Message Wrapper (RFC 9999).
var OIDCMW = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 35}

// Size caps, enforced before anything is parsed.
const (
	// MaxExtensionSize caps the DER value of the id-pe-cmw extension.
	MaxExtensionSize = 64 << 10
	// MaxRecordSize caps one decoded record value.
	MaxRecordSize = 32 << 10
	// MaxRecords caps the number of records in a collection.
	MaxRecords = 8
	// MaxLabelSize and MaxMediaTypeSize cap the strings of a record.
	MaxLabelSize     = 64
	MaxMediaTypeSize = 128
)

// CollectionTypeKey is the reserved member of a JSON CMW collection that
// names the collection type.
const CollectionTypeKey = "__cmwc_t"

// BindingLabel and BindingMediaType name the record that carries the
// binding parameters (role and freshness mode) in every collection.
const (
	BindingRecordLabel = "binding"
	BindingMediaType   = "application/vnd.atls.binding+json"
)

// Record is one CMW record: a media type and an opaque value.
type Record struct {
	MediaType string
	Value     []byte
}

// Evidence is a CMW collection: a collection type naming the platform
// format, and labelled records. It is what an Attester returns and what a
// Verifier appraises. The TLS layer adds the binding record.
type Evidence struct {
	// Type is the CMW collection type (the "__cmwc_t" member), a URI that
	// names the platform evidence format and its version.
	Type string
	// Records maps labels to records.
	Records map[string]Record
}

// Record returns the record with the given label and media type, or an
// ErrMalformedEvidence naming the label.
func (e *Evidence) Record(label, mediaType string) ([]byte, error) {
	r, ok := e.Records[label]
	if !ok {
		return nil, Fail(ErrMalformedEvidence, "evidence.record", "missing record %q", label)
	}
	if r.MediaType != mediaType {
		return nil, Fail(ErrMalformedEvidence, "evidence.record", "record %q has media type %q, want %q", label, r.MediaType, mediaType)
	}
	return r.Value, nil
}

// BindingParams are the parameters carried in the binding record. The
// verifier checks them against what it expects, then recomputes
// REPORT_DATA from the certificate and its own nonce.
type BindingParams struct {
	Version int  `json:"version"`
	Role    Role `json:"role"`
	Mode    Mode `json:"mode"`
}

// BindingParamsVersion is the only binding record version understood.
const BindingParamsVersion = 1

// SetBinding adds (or replaces) the binding record.
func (e *Evidence) SetBinding(role Role, mode Mode) error {
	b, err := json.Marshal(BindingParams{Version: BindingParamsVersion, Role: role, Mode: mode})
	if err != nil {
		return err
	}
	if e.Records == nil {
		e.Records = map[string]Record{}
	}
	e.Records[BindingRecordLabel] = Record{MediaType: BindingMediaType, Value: b}
	return nil
}

// Binding decodes the binding record strictly: exactly the members
// "version" (the number 1), "role" and "mode", each once, spelled exactly,
// and nothing after the object.
func (e *Evidence) Binding() (BindingParams, error) {
	var p BindingParams
	raw, err := e.Record(BindingRecordLabel, BindingMediaType)
	if err != nil {
		return p, err
	}
	bad := func(format string, args ...any) (BindingParams, error) {
		return BindingParams{}, Fail(ErrMalformedEvidence, "evidence.binding", format, args...)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bad("binding record is not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad("%v", err)
		}
		key, _ := t.(string)
		if seen[key] {
			return bad("duplicate member %q", key)
		}
		seen[key] = true
		v, err := dec.Token()
		if err != nil {
			return bad("%v", err)
		}
		switch key {
		case "version":
			n, ok := v.(json.Number)
			if !ok || n.String() != "1" {
				return bad("unknown binding version %v", v)
			}
			p.Version = BindingParamsVersion
		case "role":
			s, ok := v.(string)
			if !ok {
				return bad("role is not a string")
			}
			if err := p.Role.UnmarshalText([]byte(s)); err != nil {
				return bad("%v", err)
			}
		case "mode":
			s, ok := v.(string)
			if !ok {
				return bad("mode is not a string")
			}
			if err := p.Mode.UnmarshalText([]byte(s)); err != nil {
				return bad("%v", err)
			}
		default:
			return bad("unknown member %q", key)
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return bad("binding record not closed")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bad("trailing data after binding record")
	}
	if len(seen) != 3 {
		return bad("binding record needs version, role and mode")
	}
	return p, nil
}

// Digest is the SHA-256 of the JSON encoding of e.
func (e *Evidence) Digest() ([sha256.Size]byte, error) {
	b, err := e.MarshalJSON()
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// MarshalJSON encodes e as a JSON CMW collection, members sorted by label
// so that the encoding is deterministic.
func (e *Evidence) MarshalJSON() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	labels := make([]string, 0, len(e.Records))
	for l := range e.Records {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	var buf bytes.Buffer
	buf.WriteByte('{')
	writeString(&buf, CollectionTypeKey)
	buf.WriteByte(':')
	writeString(&buf, e.Type)
	for _, l := range labels {
		r := e.Records[l]
		buf.WriteByte(',')
		writeString(&buf, l)
		buf.WriteString(":[")
		writeString(&buf, r.MediaType)
		buf.WriteByte(',')
		writeString(&buf, base64.RawURLEncoding.EncodeToString(r.Value))
		buf.WriteByte(']')
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// writeString writes s as a JSON string. Every string written has been
// checked to consist of characters that JSON does not escape, so the
// encoding is the plain quoted text and the same in every implementation.
func writeString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	buf.WriteString(s)
	buf.WriteByte('"')
}

func (e *Evidence) check() error {
	if e == nil {
		return Fail(ErrMalformedEvidence, "evidence.collection", "nil evidence")
	}
	if err := checkType(e.Type); err != nil {
		return err
	}
	if len(e.Records) == 0 || len(e.Records) > MaxRecords {
		return Fail(ErrMalformedEvidence, "evidence.collection", "collection has %d records, want 1..%d", len(e.Records), MaxRecords)
	}
	for l, r := range e.Records {
		if err := checkLabel(l); err != nil {
			return err
		}
		if err := checkMediaType(l, r.MediaType); err != nil {
			return err
		}
		if len(r.Value) == 0 || len(r.Value) > MaxRecordSize {
			return Fail(ErrMalformedEvidence, "evidence.record", "record %q: value of %d bytes, want 1..%d", l, len(r.Value), MaxRecordSize)
		}
	}
	return nil
}

// checkType accepts a collection type of 1 to MaxMediaTypeSize printable
// ASCII characters other than those JSON or URIs would need escaped.
func checkType(t string) error {
	if t == "" || len(t) > MaxMediaTypeSize {
		return Fail(ErrMalformedEvidence, "evidence.collection", "collection type missing or longer than %d bytes", MaxMediaTypeSize)
	}
	for _, c := range []byte(t) {
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' {
			return Fail(ErrMalformedEvidence, "evidence.collection", "collection type %q has a character outside printable ASCII URI characters", t)
		}
	}
	return nil
}

// checkMediaType accepts "type/subtype" with RFC 6838 restricted-name
// characters and no parameters.
func checkMediaType(label, mt string) error {
	bad := Fail(ErrMalformedEvidence, "evidence.record", "record %q: media type %q is not type/subtype of at most %d bytes", label, mt, MaxMediaTypeSize)
	if mt == "" || len(mt) > MaxMediaTypeSize {
		return bad
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || !restrictedName(typ) || !restrictedName(sub) {
		return bad
	}
	return nil
}

func restrictedName(s string) bool {
	if s == "" || len(s) > 127 {
		return false
	}
	for i, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return false
		}
		if !alnum && !strings.ContainsRune("!#$&-^_.+", rune(c)) {
			return false
		}
	}
	return true
}

// isBase64URL reports whether s uses only the unpadded base64url alphabet
// (Go's decoder would otherwise skip line breaks).
func isBase64URL(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func checkLabel(l string) error {
	if l == "" || len(l) > MaxLabelSize || l == CollectionTypeKey || strings.HasPrefix(l, "__") {
		return Fail(ErrMalformedEvidence, "evidence.record", "invalid label %q", l)
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return Fail(ErrMalformedEvidence, "evidence.record", "invalid label %q (want [a-z0-9-])", l)
		}
	}
	return nil
}

// UnmarshalJSON decodes a JSON CMW collection strictly: one object, the
// collection type first or anywhere, no duplicate members, records as
// [media-type, base64url] pairs (no indicator, no nested collections),
// no trailing data.
func (e *Evidence) UnmarshalJSON(data []byte) error {
	out, err := ParseCollection(data)
	if err != nil {
		return err
	}
	*e = *out
	return nil
}

// ParseCollection decodes a JSON CMW collection; see UnmarshalJSON.
func ParseCollection(data []byte) (*Evidence, error) {
	bad := func(format string, args ...any) (*Evidence, error) {
		return nil, Fail(ErrMalformedEvidence, "evidence.collection", format, args...)
	}
	if len(data) > MaxExtensionSize {
		return bad("collection of %d bytes exceeds %d", len(data), MaxExtensionSize)
	}
	if !utf8.Valid(data) {
		return bad("collection is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bad("collection is not a JSON object")
	}
	ev := &Evidence{Records: map[string]Record{}}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad("%v", err)
		}
		key, _ := t.(string)
		if seen[key] {
			return bad("duplicate member %q", key)
		}
		seen[key] = true
		if key == CollectionTypeKey {
			t, err := dec.Token()
			s, ok := t.(string)
			if err != nil || !ok {
				return bad("collection type must be a string")
			}
			if err := checkType(s); err != nil {
				return nil, err
			}
			ev.Type = s
			continue
		}
		if err := checkLabel(key); err != nil {
			return nil, err
		}
		if len(ev.Records) == MaxRecords {
			return bad("more than %d records", MaxRecords)
		}
		var parts [2]string
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return bad("record %q is not a [media-type, value] array", key)
		}
		for i := range parts {
			t, err := dec.Token()
			s, ok := t.(string)
			if err != nil || !ok {
				return bad("record %q is not a [media-type, value] array of strings", key)
			}
			parts[i] = s
		}
		if t, err := dec.Token(); err != nil || t != json.Delim(']') {
			return bad("record %q has more than two members", key)
		}
		if err := checkMediaType(key, parts[0]); err != nil {
			return nil, err
		}
		if base64.RawURLEncoding.DecodedLen(len(parts[1])) > MaxRecordSize {
			return bad("record %q: value exceeds %d bytes", key, MaxRecordSize)
		}
		v, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
		if err == nil && !isBase64URL(parts[1]) {
			err = errors.New("characters outside the base64url alphabet")
		}
		if err != nil {
			return bad("record %q: value is not unpadded base64url: %v", key, err)
		}
		if len(v) == 0 {
			return bad("record %q: empty value", key)
		}
		ev.Records[key] = Record{MediaType: parts[0], Value: v}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return bad("collection object not closed")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bad("trailing data after collection")
	}
	if ev.Type == "" {
		return bad("missing %q member", CollectionTypeKey)
	}
	if len(ev.Records) == 0 {
		return bad("collection has no records")
	}
	return ev, nil
}

// Extension encodes e as the non-critical id-pe-cmw extension: a DER
// UTF8String holding the JSON collection (the JSON choice of RFC 9999's
// CMW ASN.1 type).
func (e *Evidence) Extension() (pkix.Extension, error) {
	j, err := e.MarshalJSON()
	if err != nil {
		return pkix.Extension{}, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes(j) })
	der, err := b.Bytes()
	if err != nil {
		return pkix.Extension{}, err
	}
	if len(der) > MaxExtensionSize {
		return pkix.Extension{}, Fail(ErrMalformedEvidence, "evidence.extension", "encoded evidence of %d bytes exceeds %d", len(der), MaxExtensionSize)
	}
	return pkix.Extension{Id: OIDCMW, Critical: false, Value: der}, nil
}

// ParseExtensionValue decodes the DER value of an id-pe-cmw extension.
func ParseExtensionValue(der []byte) (*Evidence, error) {
	if len(der) > MaxExtensionSize {
		return nil, Fail(ErrMalformedEvidence, "evidence.extension", "extension of %d bytes exceeds %d", len(der), MaxExtensionSize)
	}
	s := cryptobyte.String(der)
	var j cryptobyte.String
	if !s.ReadASN1(&j, cbasn1.UTF8String) {
		return nil, Fail(ErrMalformedEvidence, "evidence.extension", "extension value is not a DER UTF8String (the CBOR form is not supported)")
	}
	if !s.Empty() {
		return nil, Fail(ErrMalformedEvidence, "evidence.extension", "trailing data after UTF8String")
	}
	return ParseCollection(j)
}

// FromCertificate extracts the evidence of cert. It fails with
// ErrNotAttested when the extension is absent and ErrMalformedEvidence when
// it is present more than once, critical, or malformed.
func FromCertificate(cert *x509.Certificate) (*Evidence, error) {
	if cert == nil {
		return nil, Fail(ErrNotAttested, "evidence.extension", "no certificate")
	}
	var found *pkix.Extension
	for i := range cert.Extensions {
		ext := &cert.Extensions[i]
		if !ext.Id.Equal(OIDCMW) {
			continue
		}
		if found != nil {
			return nil, Fail(ErrMalformedEvidence, "evidence.extension", "duplicate id-pe-cmw extension")
		}
		found = ext
	}
	if found == nil {
		return nil, Fail(ErrNotAttested, "evidence.extension", "certificate has no id-pe-cmw extension")
	}
	if found.Critical {
		return nil, Fail(ErrMalformedEvidence, "evidence.extension", "id-pe-cmw extension must not be critical")
	}
	return ParseExtensionValue(found.Value)
}
