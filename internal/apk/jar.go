package apk

import (
	"archive/zip"
	"bytes"
	"crypto"
	_ "crypto/sha1" // SHA1-Digest, the only digest Android before 4.3 reads
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"math/big"
	"sort"
	"strings"
)

// Manifest digest attributes and the first SDK that understands each.
var jarDigests = []struct {
	name   string
	hash   crypto.Hash
	minSdk int
}{
	{"SHA1", crypto.SHA1, 1},
	{"SHA-256", crypto.SHA256, 18},
	{"SHA-384", crypto.SHA384, 18},
	{"SHA-512", crypto.SHA512, 18},
}

// section is one section of a JAR manifest or signature file.
type section struct {
	raw   []byte // as written, with its closing blank line
	attrs map[string]string
}

// parseSections splits a manifest into its sections, joining continuation
// lines. Keys are case-insensitive, so they are kept lower-case.
func parseSections(b []byte) ([]section, error) {
	var out []section
	cur := section{attrs: map[string]string{}}
	start, lastKey := 0, ""
	for pos := 0; pos < len(b); {
		end := bytes.IndexAny(b[pos:], "\r\n")
		next := len(b)
		if end >= 0 {
			end += pos
			next = end + 1
			if b[end] == '\r' && next < len(b) && b[next] == '\n' {
				next++
			}
		} else {
			end = len(b)
		}
		line := string(b[pos:end])
		switch {
		case line == "":
			if len(cur.attrs) > 0 {
				cur.raw = b[start:next]
				out = append(out, cur)
			}
			cur, start, lastKey = section{attrs: map[string]string{}}, next, ""
		case line[0] == ' ':
			if lastKey == "" {
				return nil, verdict("its JAR manifest has a continuation line with nothing to continue")
			}
			cur.attrs[lastKey] += line[1:]
		default:
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				return nil, verdict("its JAR manifest has a line without \": \"")
			}
			lastKey = strings.ToLower(k)
			cur.attrs[lastKey] = v
		}
		pos = next
		if len(out) > 1<<20 {
			return nil, verdict("its JAR manifest has too many sections")
		}
	}
	if len(cur.attrs) > 0 {
		cur.raw = b[start:]
		out = append(out, cur)
	}
	if len(out) == 0 {
		return nil, verdict("its JAR manifest is empty")
	}
	return out, nil
}

// digestMatches checks the digest attributes "<alg>-Digest<suffix>" of s
// against data: each one an Android of minSdk understands must match, and
// there must be at least one.
func digestMatches(attrs map[string]string, suffix string, data []byte, minSdk int) (found, ok bool) {
	ok = true
	for _, d := range jarDigests {
		v, present := attrs[strings.ToLower(d.name+"-Digest"+suffix)]
		if !present {
			continue
		}
		h := d.hash.New()
		h.Write(data)
		if base64.StdEncoding.EncodeToString(h.Sum(nil)) != strings.TrimSpace(v) {
			ok = false
		}
		if d.minSdk <= minSdk {
			found = true
		}
	}
	return found, ok
}

// isSignatureFile reports whether name is one of the JAR signature files,
// which the manifest does not list.
func isSignatureFile(name string) bool {
	rest, ok := strings.CutPrefix(name, "META-INF/")
	if !ok || strings.Contains(rest, "/") {
		return false
	}
	upper := strings.ToUpper(rest)
	return upper == "MANIFEST.MF" || strings.HasPrefix(upper, "SIG-") ||
		strings.HasSuffix(upper, ".SF") || strings.HasSuffix(upper, ".RSA") ||
		strings.HasSuffix(upper, ".DSA") || strings.HasSuffix(upper, ".EC")
}

// verifyV1 checks JAR signing: each signer's PKCS#7 block signs its .SF
// file, the .SF file matches MANIFEST.MF, and MANIFEST.MF lists every entry
// with a matching digest.
func verifyV1(zr *zip.Reader, byName map[string]*zip.File, minSdk int, blocks map[uint32][]byte) (*schemeResult, error) {
	mf, ok := byName["META-INF/MANIFEST.MF"]
	if !ok {
		if len(blocks) == 0 {
			return nil, verdict("it is not signed: it has no JAR signature (META-INF/MANIFEST.MF) and no APK Signing Block")
		}
		if minSdk >= sdkN {
			return nil, verdict("it is not signed with a JAR (v1) signature or v2, one of which devices below Android 9 (SDK 28) need, and its minSdkVersion is %d", minSdk)
		}
		return nil, verdict("it is not signed with a JAR (v1) signature, which devices below Android 7.0 (SDK 24) need, and its minSdkVersion is %d", minSdk)
	}
	manifest, err := readEntry(mf, maxMetaFile)
	if err != nil {
		return nil, err
	}
	sections, err := parseSections(manifest)
	if err != nil {
		return nil, err
	}
	entries := map[string]section{}
	for _, s := range sections[1:] {
		name := s.attrs["name"]
		if _, dup := entries[name]; dup || name == "" {
			return nil, verdict("its JAR manifest names the entry %q twice or not at all", name)
		}
		entries[name] = s
	}

	res := &schemeResult{name: "v1"}
	var sfNames []string
	for name := range byName {
		if strings.HasPrefix(name, "META-INF/") && strings.HasSuffix(strings.ToUpper(name), ".SF") && !strings.Contains(name[len("META-INF/"):], "/") {
			sfNames = append(sfNames, name)
		}
	}
	sort.Strings(sfNames)
	if len(sfNames) == 0 {
		return nil, verdict("its JAR signature has no .SF signature file")
	}
	if len(sfNames) > maxSigners {
		return nil, verdict("its JAR signature has more than %d signers", maxSigners)
	}
	for _, sfName := range sfNames {
		cert, err := verifySignatureFile(sfName, byName, manifest, sections, entries, minSdk, blocks)
		if err != nil {
			return nil, err
		}
		res.certs = append(res.certs, cert)
	}

	var total uint64
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") || isSignatureFile(f.Name) {
			continue
		}
		s, ok := entries[f.Name]
		if !ok {
			return nil, verdict("its JAR manifest does not list the entry %q", f.Name)
		}
		if total += f.UncompressedSize64; total > maxV1Total {
			return nil, verdict("its entries exceed %d uncompressed bytes, more than JAR verification here reads", uint64(maxV1Total))
		}
		found, ok, err := entryDigest(f, s.attrs, minSdk)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, verdict("its JAR manifest has no digest of %q that Android %d understands", f.Name, minSdk)
		}
		if !ok {
			return nil, verdict("the entry %q does not match its JAR manifest digest: the file was changed after signing", f.Name)
		}
	}
	return res, nil
}

// entryDigest streams f's contents through each digest its section names.
func entryDigest(f *zip.File, attrs map[string]string, minSdk int) (found, ok bool, err error) {
	type check struct {
		h    interface{ Sum([]byte) []byte }
		want string
	}
	var checks []check
	var writers []io.Writer
	for _, d := range jarDigests {
		v, present := attrs[strings.ToLower(d.name+"-Digest")]
		if !present {
			continue
		}
		h := d.hash.New()
		checks = append(checks, check{h, strings.TrimSpace(v)})
		writers = append(writers, h)
		found = found || d.minSdk <= minSdk
	}
	if len(checks) == 0 {
		return false, false, nil
	}
	rc, err := f.Open()
	if err != nil {
		return false, false, verdict("the entry %q cannot be read: %v", f.Name, err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.MultiWriter(writers...), rc); err != nil {
		return false, false, verdict("the entry %q cannot be read: %v", f.Name, err)
	}
	for _, c := range checks {
		if base64.StdEncoding.EncodeToString(c.h.Sum(nil)) != c.want {
			return found, false, nil
		}
	}
	return found, true, nil
}

// verifySignatureFile checks one JAR signer and returns its certificate's
// SHA-256.
func verifySignatureFile(sfName string, byName map[string]*zip.File, manifest []byte, sections []section, entries map[string]section, minSdk int, blocks map[uint32][]byte) (string, error) {
	base := strings.TrimSuffix(sfName, sfName[len(sfName)-3:])
	var block *zip.File
	for _, ext := range []string{".RSA", ".DSA", ".EC"} {
		if f, ok := byName[base+ext]; ok {
			block = f
			break
		}
	}
	if block == nil {
		return "", verdict("its JAR signature file %s has no signature block (.RSA, .DSA or .EC)", sfName)
	}
	sf, err := readEntry(byName[sfName], maxMetaFile)
	if err != nil {
		return "", err
	}
	pkcs7, err := readEntry(block, maxMetaFile)
	if err != nil {
		return "", err
	}
	certDER, err := verifyPKCS7(pkcs7, sf)
	if err != nil {
		return "", verdict("its JAR signature %s does not verify: %s", block.Name, err.(*Error).Reason)
	}
	sfSections, err := parseSections(sf)
	if err != nil {
		return "", err
	}
	main := sfSections[0].attrs
	// Stripping protection: the signer says which newer schemes it also
	// applied, so removing their blocks does not downgrade the APK.
	for _, id := range strings.Split(main["x-android-apk-signed"], ",") {
		switch strings.TrimSpace(id) {
		case "2":
			if _, ok := blocks[idV2]; !ok {
				return "", verdict("its JAR signature says it was also signed with APK Signature Scheme v2, but that signature is missing")
			}
		case "3":
			if _, ok := blocks[idV3]; !ok {
				return "", verdict("its JAR signature says it was also signed with APK Signature Scheme v3, but that signature is missing")
			}
		}
	}
	if found, ok := digestMatches(main, "-Manifest", manifest, minSdk); found && ok {
		return certHash(certDER), nil
	}
	// Without a whole-manifest digest, the main attributes and each entry's
	// section are checked one by one.
	if found, ok := digestMatches(main, "-Manifest-Main-Attributes", sections[0].raw, minSdk); found && !ok {
		return "", verdict("its JAR signature file %s does not match the manifest's main attributes", sfName)
	}
	covered := map[string]bool{}
	for _, s := range sfSections[1:] {
		name := s.attrs["name"]
		ms, ok := entries[name]
		if !ok {
			return "", verdict("its JAR signature file %s signs %q, which the manifest does not list", sfName, name)
		}
		found, ok := digestMatches(s.attrs, "", ms.raw, minSdk)
		if !found || !ok {
			return "", verdict("its JAR signature file %s does not match the manifest section of %q", sfName, name)
		}
		covered[name] = true
	}
	for name := range entries {
		if !covered[name] {
			return "", verdict("its JAR signature file %s does not sign %q", sfName, name)
		}
	}
	return certHash(certDER), nil
}

// PKCS#7 / CMS structures, as much of them as JAR signing uses.
type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type signedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	ContentInfo      asn1.RawValue
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos      []signerInfo  `asn1:"set"`
}

type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

type signerInfo struct {
	Version            int
	Sid                issuerAndSerial
	DigestAlgorithm    pkix.AlgorithmIdentifier
	SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          []byte
	UnsignedAttrs      asn1.RawValue `asn1:"optional,tag:1"`
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue `asn1:"set"`
}

var (
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	digestOIDs       = map[string]crypto.Hash{
		"1.3.14.3.2.26":          crypto.SHA1,
		"2.16.840.1.101.3.4.2.1": crypto.SHA256,
		"2.16.840.1.101.3.4.2.2": crypto.SHA384,
		"2.16.840.1.101.3.4.2.3": crypto.SHA512,
		"1.2.840.113549.1.1.5":   crypto.SHA1, // some signers put the signature OID here
		"1.2.840.113549.1.1.11":  crypto.SHA256,
		"1.2.840.113549.1.1.12":  crypto.SHA384,
		"1.2.840.113549.1.1.13":  crypto.SHA512,
		"1.2.840.10045.4.1":      crypto.SHA1,
		"1.2.840.10045.4.3.2":    crypto.SHA256,
		"1.2.840.10045.4.3.3":    crypto.SHA384,
		"1.2.840.10045.4.3.4":    crypto.SHA512,
		"2.16.840.1.101.3.4.3.2": crypto.SHA256, // dsa-with-sha256
		"1.2.840.10040.4.3":      crypto.SHA1,   // dsa-with-sha1
	}
)

// verifyPKCS7 checks that the detached PKCS#7 SignedData in der signs
// content, and returns the DER of the first signer's certificate.
func verifyPKCS7(der, content []byte) ([]byte, error) {
	var ci contentInfo
	if rest, err := asn1.Unmarshal(der, &ci); err != nil || len(rest) > 0 || !ci.ContentType.Equal(oidSignedData) {
		return nil, verdict("it is not PKCS#7 SignedData")
	}
	var sd signedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, verdict("its PKCS#7 SignedData is malformed")
	}
	if len(sd.SignerInfos) == 0 {
		return nil, verdict("it has no signer")
	}
	var certs []*x509.Certificate
	for rest := sd.Certificates.Bytes; len(rest) > 0; {
		var raw asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &raw); err != nil {
			return nil, verdict("its certificates are malformed")
		}
		c, err := x509.ParseCertificate(raw.FullBytes)
		if err != nil {
			return nil, verdict("a certificate cannot be parsed: %v", err)
		}
		if len(certs) == maxListLen {
			return nil, verdict("it has more than %d certificates", maxListLen)
		}
		certs = append(certs, c)
	}
	si := sd.SignerInfos[0]
	var cert *x509.Certificate
	for _, c := range certs {
		if c.SerialNumber.Cmp(si.Sid.Serial) == 0 && bytes.Equal(c.RawIssuer, si.Sid.Issuer.FullBytes) {
			cert = c
			break
		}
	}
	if cert == nil {
		return nil, verdict("its signer's certificate is missing")
	}
	h, ok := digestOIDs[si.DigestAlgorithm.Algorithm.String()]
	if !ok {
		return nil, verdict("its digest algorithm %s is not supported", si.DigestAlgorithm.Algorithm)
	}
	signed := content
	if len(si.SignedAttrs.FullBytes) > 0 {
		// The signature covers the attributes, re-tagged as a SET; they
		// carry the content's digest.
		var attrs []attribute
		if _, err := asn1.UnmarshalWithParams(si.SignedAttrs.FullBytes, &attrs, "set,tag:0"); err != nil {
			return nil, verdict("its signed attributes are malformed")
		}
		sum := h.New()
		sum.Write(content)
		matched := false
		for _, a := range attrs {
			var v []byte
			if a.Type.Equal(oidMessageDigest) {
				if _, err := asn1.Unmarshal(a.Values.Bytes, &v); err == nil && bytes.Equal(v, sum.Sum(nil)) {
					matched = true
				}
			}
		}
		if !matched {
			return nil, verdict("its signed message digest does not match the signature file")
		}
		signed = append([]byte{0x31}, si.SignedAttrs.FullBytes[1:]...)
	}
	kind := map[x509.PublicKeyAlgorithm]byte{x509.RSA: 'r', x509.ECDSA: 'e', x509.DSA: 'd'}[cert.PublicKeyAlgorithm]
	if !checkSignature(sigAlg{hash: h, kind: kind}, cert.PublicKey, signed, si.Signature) {
		return nil, verdict("its signature does not match the signature file")
	}
	return cert.Raw, nil
}
