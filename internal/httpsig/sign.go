package httpsig

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
)

// Label is the signature's label in Signature-Input and Signature.
const Label = "wemesse"

// Alg is the signature algorithm's name in the RFC 9421 registry.
const Alg = "ed25519"

// covered are the components every signature covers, in order.
var covered = []string{"@status", "content-digest"}

// ContentDigest is the RFC 9530 Content-Digest value of body:
// sha-256=:<base64>:.
func ContentDigest(body []byte) string {
	sum := sha256.Sum256(body)
	d := httpsfv.NewDictionary()
	d.Add("sha-256", httpsfv.NewItem(sum[:]))
	s, _ := httpsfv.Marshal(d) // a byte sequence always serializes
	return s
}

// Signer signs answers with one private key.
type Signer struct {
	key Key
	ttl time.Duration
}

// NewSigner returns a Signer whose signatures expire ttl after creation.
func NewSigner(key Key, ttl time.Duration) (*Signer, error) {
	if key.Private == nil {
		return nil, errors.New("httpsig: the current answer key must be a private key")
	}
	return &Signer{key: key, ttl: ttl}, nil
}

// KeyID is the kid of the signing key.
func (s *Signer) KeyID() string { return s.key.ID }

// Signed is what a signature adds to an answer: its header values.
type Signed struct {
	Created        time.Time
	SignatureInput string
	Signature      string
}

// Sign signs an answer with status and Content-Digest value digest, as
// created at created (whole seconds).
func (s *Signer) Sign(status int, digest string, created time.Time) Signed {
	created = created.Truncate(time.Second)
	params := httpsfv.NewParams()
	params.Add("created", created.Unix())
	params.Add("expires", created.Add(s.ttl).Unix())
	params.Add("keyid", s.key.ID)
	params.Add("alg", Alg)
	list := httpsfv.InnerList{Params: params}
	for _, c := range covered {
		list.Items = append(list.Items, httpsfv.NewItem(c))
	}
	sigParams, _ := httpsfv.Marshal(list) // integers and ASCII strings always serialize
	sig := ed25519.Sign(s.key.Private, base(status, digest, sigParams))
	out, _ := httpsfv.Marshal(dict(httpsfv.NewItem(sig)))
	return Signed{Created: created, SignatureInput: Label + "=" + sigParams, Signature: out}
}

func dict(m httpsfv.Member) *httpsfv.Dictionary {
	d := httpsfv.NewDictionary()
	d.Add(Label, m)
	return d
}

// base is the RFC 9421 signature base of an answer (section 2.5): one line
// per covered component, then the signature parameters, joined by LF.
func base(status int, digest, sigParams string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "\"@status\": %d\n", status)
	fmt.Fprintf(&b, "\"content-digest\": %s\n", digest)
	fmt.Fprintf(&b, "\"@signature-params\": %s", sigParams)
	return []byte(b.String())
}

// Errors of Verify; each wraps into the error it returns.
var (
	ErrMissing      = errors.New("the answer carries no wemesse signature")
	ErrMalformed    = errors.New("the signature headers are malformed")
	ErrUnknownKey   = errors.New("the signing key is not in the key set")
	ErrBadSignature = errors.New("the signature does not verify")
	ErrDigest       = errors.New("the body does not match its Content-Digest")
	ErrExpired      = errors.New("the signature has expired")
	ErrReplayed     = errors.New("the answer is older than one already accepted")
)

// Params are a verified signature's parameters.
type Params struct {
	Created, Expires time.Time
	KeyID            string
}

// Verify checks an update answer the way clients must:
//  1. Signature-Input has the label wemesse covering exactly "@status" and
//     "content-digest", with created, expires, keyid and alg="ed25519";
//  2. keyid names a key of keys;
//  3. the Ed25519 signature in Signature verifies over the signature base
//     built from status, the Content-Digest header and the parameters;
//  4. Content-Digest's sha-256 equals the SHA-256 of body;
//  5. expires is after now;
//  6. created is not before notBefore, the created of the last answer the
//     client accepted (zero: none), so an older answer cannot be replayed.
func Verify(status int, h http.Header, body []byte, keys KeySet, now, notBefore time.Time) (Params, error) {
	inputs, err := httpsfv.UnmarshalDictionary(h.Values("Signature-Input"))
	if err != nil {
		return Params{}, fmt.Errorf("%w: Signature-Input: %v", ErrMalformed, err)
	}
	sigs, err := httpsfv.UnmarshalDictionary(h.Values("Signature"))
	if err != nil {
		return Params{}, fmt.Errorf("%w: Signature: %v", ErrMalformed, err)
	}
	m, ok1 := inputs.Get(Label)
	s, ok2 := sigs.Get(Label)
	if !ok1 || !ok2 {
		return Params{}, ErrMissing
	}
	list, ok := m.(httpsfv.InnerList)
	sigItem, ok2 := s.(httpsfv.Item)
	if !ok || !ok2 {
		return Params{}, fmt.Errorf("%w: the wemesse members have the wrong types", ErrMalformed)
	}
	sig, ok := sigItem.Value.([]byte)
	if !ok || len(list.Items) != len(covered) {
		return Params{}, fmt.Errorf("%w: want a byte sequence covering %q", ErrMalformed, covered)
	}
	for i, c := range covered {
		if name, _ := list.Items[i].Value.(string); name != c || len(list.Items[i].Params.Names()) != 0 {
			return Params{}, fmt.Errorf("%w: want covered components %q", ErrMalformed, covered)
		}
	}
	p, err := readParams(list.Params)
	if err != nil {
		return Params{}, err
	}
	pub, ok := keys[p.KeyID]
	if !ok {
		return Params{}, fmt.Errorf("%w: %q", ErrUnknownKey, p.KeyID)
	}
	digest := strings.TrimSpace(strings.Join(h.Values("Content-Digest"), ", "))
	sigParams, err := httpsfv.Marshal(list)
	if err != nil {
		return Params{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !ed25519.Verify(pub, base(status, digest, sigParams), sig) {
		return Params{}, ErrBadSignature
	}
	if err := checkDigest(digest, body); err != nil {
		return Params{}, err
	}
	if !p.Expires.After(now) {
		return Params{}, fmt.Errorf("%w: at %s", ErrExpired, p.Expires.UTC().Format(time.RFC3339))
	}
	if p.Created.Before(notBefore) {
		return Params{}, fmt.Errorf("%w: created %s", ErrReplayed, p.Created.UTC().Format(time.RFC3339))
	}
	return p, nil
}

// readParams reads created, expires, keyid and alg.
func readParams(params *httpsfv.Params) (Params, error) {
	var p Params
	created, ok1 := get[int64](params, "created")
	expires, ok2 := get[int64](params, "expires")
	keyID, ok3 := get[string](params, "keyid")
	alg, ok4 := get[string](params, "alg")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return p, fmt.Errorf("%w: created, expires, keyid and alg are required", ErrMalformed)
	}
	if alg != Alg {
		return p, fmt.Errorf("%w: alg %q is not %q", ErrMalformed, alg, Alg)
	}
	return Params{Created: time.Unix(created, 0), Expires: time.Unix(expires, 0), KeyID: keyID}, nil
}

func get[T any](params *httpsfv.Params, name string) (T, bool) {
	v, ok := params.Get(name)
	t, ok2 := v.(T)
	return t, ok && ok2
}

// checkDigest checks a Content-Digest's sha-256 against body.
func checkDigest(digest string, body []byte) error {
	d, err := httpsfv.UnmarshalDictionary([]string{digest})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDigest, err)
	}
	m, ok := d.Get("sha-256")
	item, ok2 := m.(httpsfv.Item)
	if !ok || !ok2 {
		return fmt.Errorf("%w: no sha-256 digest", ErrDigest)
	}
	got, _ := item.Value.([]byte)
	want := sha256.Sum256(body)
	if string(got) != string(want[:]) {
		return ErrDigest
	}
	return nil
}
