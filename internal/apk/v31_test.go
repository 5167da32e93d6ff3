package apk

import (
	"archive/zip"
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Debian apksigner (0.9) cannot make APK Signature Scheme v3.1
// blocks, so these tests build APKs in memory: the manifest of
// testdata/apk/good.apk (minSdk 24) and signing blocks assembled here,
// signed with RSA PKCS#1 SHA-256 (algorithm 0x0103).

type testSigner struct {
	key  *rsa.PrivateKey
	cert []byte
	spki []byte
}

func newTestSigner(tb testing.TB, name string) *testSigner {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	return &testSigner{key: key, cert: cert, spki: spki}
}

func (s *testSigner) sign(tb testing.TB, msg []byte) []byte {
	sum := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func lpb(b []byte) []byte  { return append(le32(uint32(len(b))), b...) }
func cat(p ...[]byte) []byte {
	return bytes.Join(p, nil)
}

// lineage is a proof-of-rotation record: from signs to, both with 0x0103.
func lineage(tb testing.TB, from, to *testSigner) []byte {
	first := cat(lpb(cat(lpb(from.cert), le32(0))), le32(0), le32(0x0103), lpb(nil))
	signed := cat(lpb(to.cert), le32(0x0103))
	second := cat(lpb(signed), le32(0), le32(0), lpb(from.sign(tb, signed)))
	return cat(le32(1), lpb(first), lpb(second))
}

// testBlock is one scheme block to sign: v2 (id idV2, no SDK range) or
// v3/v3.1 with a range and, maybe, a proof-of-rotation.
type testBlock struct {
	id       uint32
	signer   *testSigner
	min, max uint32
	rotation []byte
	also     []testBlock // further signers of the same block (their id unused)
}

// buildAPK assembles an APK with the given blocks over digest, the
// content digest of its sections (computed by the caller's first pass).
func buildAPK(tb testing.TB, blocks []testBlock, digest []byte) (apk []byte, entries, cd, eocd func(cdOffset int) []byte) {
	tb.Helper()
	zr, err := zip.OpenReader(filepath.Join("..", "..", "testdata", "apk", "good.apk"))
	if err != nil {
		tb.Fatal(err)
	}
	defer zr.Close()
	f, _ := zr.Open("AndroidManifest.xml")
	manifest, _ := io.ReadAll(f)
	f.Close()
	name := "AndroidManifest.xml"
	head := cat(le32(0x04034b50), []byte{20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0}, le32(crc32.ChecksumIEEE(manifest)),
		le32(uint32(len(manifest))), le32(uint32(len(manifest))), []byte{byte(len(name)), 0, 0, 0}, []byte(name), manifest)
	central := cat(le32(0x02014b50), []byte{20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0}, le32(crc32.ChecksumIEEE(manifest)),
		le32(uint32(len(manifest))), le32(uint32(len(manifest))), []byte{byte(len(name)), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, le32(0), []byte(name))
	end := func(cdOffset int) []byte {
		return cat(le32(0x06054b50), []byte{0, 0, 0, 0, 1, 0, 1, 0}, le32(uint32(len(central))), le32(uint32(cdOffset)), []byte{0, 0})
	}
	var pairs []byte
	for _, b := range blocks {
		var recs []byte
		for _, s := range append([]testBlock{b}, b.also...) {
			var attrs []byte
			if s.rotation != nil {
				attrs = lpb(cat(le32(attrRotation), s.rotation))
			}
			sdk := cat(le32(s.min), le32(s.max))
			if b.id == idV2 {
				sdk = nil
			}
			signed := cat(lpb(lpb(cat(le32(0x0103), lpb(digest)))), lpb(lpb(s.signer.cert)), sdk, lpb(attrs))
			rec := cat(lpb(signed), sdk, lpb(lpb(cat(le32(0x0103), lpb(s.signer.sign(tb, signed))))), lpb(s.signer.spki))
			recs = append(recs, lpb(rec)...)
		}
		value := lpb(recs)
		pairs = append(pairs, cat(binary.LittleEndian.AppendUint64(nil, uint64(4+len(value))), le32(b.id), value)...)
	}
	size := uint64(len(pairs) + 24)
	block := cat(binary.LittleEndian.AppendUint64(nil, size), pairs, binary.LittleEndian.AppendUint64(nil, size), []byte(blockMagic))
	apk = cat(head, block, central, end(len(head)+len(block)))
	return apk, func(int) []byte { return head }, func(int) []byte { return central }, end
}

// signedAPK builds an APK whose blocks carry its true content digest.
func signedAPK(tb testing.TB, blocks ...testBlock) []byte {
	tb.Helper()
	_, head, central, end := buildAPK(tb, blocks, make([]byte, 32))
	h := head(0)
	d := &digester{r: bytes.NewReader(cat(h, central(0), end(len(h)))), blockOffset: int64(len(h))}
	d.l = layout{cdOffset: int64(len(h)), eocdOffset: int64(len(h) + len(central(0))), eocd: end(len(h))}
	digest, err := d.digest(1)
	if err != nil {
		tb.Fatal(err)
	}
	apk, _, _, _ := buildAPK(tb, blocks, digest)
	return apk
}

func TestVerify_v31(t *testing.T) {
	a, b, c := newTestSigner(t, "a"), newTestSigner(t, "b"), newTestSigner(t, "c")
	const platformMax = 0x7fffffff
	rotation := lineage(t, a, b)
	tests := []struct {
		name   string
		blocks []testBlock
		signer *testSigner // pinned: the signer for the newest platforms
		want   string      // part of the verdict; "" to accept
	}{
		{"v2 and v3 by one signer", []testBlock{{id: idV2, signer: a}, {id: idV3, signer: a, min: 24, max: platformMax}}, a, ""},
		{"v3.1 rotates from SDK 33, v3 keeps the old signer below", []testBlock{
			{id: idV2, signer: a}, {id: idV3, signer: a, min: 24, max: 32},
			{id: idV31, signer: b, min: 33, max: platformMax, rotation: rotation}}, b, ""},
		{"v3.1 without v3", []testBlock{{id: idV2, signer: a}, {id: idV31, signer: b, min: 33, max: platformMax, rotation: rotation}}, nil, "no v3 signature"},
		{"v3 leaves SDKs below v3.1 uncovered", []testBlock{
			{id: idV2, signer: a}, {id: idV3, signer: a, min: 24, max: 30},
			{id: idV31, signer: b, min: 33, max: platformMax, rotation: rotation}}, nil, "do not cover SDK versions 31 to 32"},
		{"v3.1 signer not a rotation of the older signer", []testBlock{
			{id: idV2, signer: a}, {id: idV3, signer: a, min: 24, max: 32},
			{id: idV31, signer: c, min: 33, max: platformMax}}, nil, "neither its older schemes' signer nor a rotation"},
		// Android 7.0 to 8.1 (SDK 24 to 27) know v2 but not v3: without
		// v2 they fall back to JAR signing.
		{"v3 only, minSdk 24, no JAR signature", []testBlock{{id: idV3, signer: a, min: 24, max: platformMax}}, nil, "not signed with a JAR (v1) signature"},
		// A device of SDK 28 to 32 verifies only the first v3 signer,
		// then refuses it as an update of an app signed by a.
		{"v3 signer for older SDKs neither the newest signer nor in its lineage", []testBlock{
			{id: idV2, signer: a}, {id: idV3, signer: c, min: 24, max: 32, also: []testBlock{{signer: a, min: 33, max: platformMax}}}}, nil, "neither its newest signer nor in its lineage"},
		{"v3 signer for older SDKs in the newest signer's lineage", []testBlock{
			{id: idV2, signer: a}, {id: idV3, signer: a, min: 24, max: 32, also: []testBlock{{signer: b, min: 33, max: platformMax, rotation: rotation}}}}, b, ""},
		{"proof-of-rotation that does not end with the signer", []testBlock{
			{id: idV2, signer: a}, {id: idV3, signer: c, min: 24, max: platformMax, rotation: rotation}}, nil, "does not end with its signing certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := signedAPK(t, tt.blocks...)
			info, err := Verify(bytes.NewReader(file), int64(len(file)))
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("verdict %v, want one containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.SignerSHA256 != certHash(tt.signer.cert) {
				t.Errorf("signer %s, want %s", info.SignerSHA256, certHash(tt.signer.cert))
			}
		})
	}
	// A changed byte in the entries fails the v3.1 digest too.
	file := signedAPK(t, testBlock{id: idV2, signer: a}, testBlock{id: idV3, signer: a, min: 24, max: 32},
		testBlock{id: idV31, signer: b, min: 33, max: platformMax, rotation: rotation})
	file[40] ^= 1
	if _, err := Verify(bytes.NewReader(file), int64(len(file))); err == nil {
		t.Error("a changed byte verified")
	}
}
