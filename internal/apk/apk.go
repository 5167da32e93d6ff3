// Package apk reads an Android package the way the platform does before it
// installs one: its ZIP layout, its binary AndroidManifest.xml and its
// signatures (JAR signing, APK Signature Schemes v2, v3 and v3.1), checked
// for every Android version inside the package's SDK range. Every count,
// length and offset read from the file is bounded before use.
package apk

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Info is what an APK declares and who signed it.
type Info struct {
	Package     string
	VersionCode int64 // versionCodeMajor<<32 | versionCode
	VersionName string
	MinSdk      int
	TargetSdk   int
	Debuggable  bool
	TestOnly    bool
	// ABIs are the directories under lib/ that hold files, sorted.
	ABIs []string
	// Schemes are the signature schemes that verified: 1, 2, 3, 31.
	Schemes []int
	// SignerSHA256 is the lowercase hex SHA-256 of the certificate the
	// newest Android versions bind the app to.
	SignerSHA256 string
	// Lineage is the SHA-256 of each certificate of its v3
	// proof-of-rotation, oldest first, ending with SignerSHA256; empty
	// without rotation.
	Lineage []string
}

// Error is a verdict: the file is not an APK Android would install. Other
// errors from Verify are failures to read the file.
type Error struct{ Reason string }

// Error implements error.
func (e *Error) Error() string { return e.Reason }

func verdict(format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// ioErr marks a read failure; a short read inside the file's size is a
// verdict, since the size came from the caller.
func ioErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return verdict("the file ends early")
	}
	return fmt.Errorf("apk: read: %w", err)
}

// Signature scheme block ids in the APK Signing Block.
const (
	idV2  = 0x7109871a
	idV3  = 0xf05368c0
	idV31 = 0x1b93ad61
)

// Android versions where the platform's checks change.
const (
	sdkN = 24 // v2 verified when present
	sdkP = 28 // v3 verified when present
	sdkR = 30 // targetSdk ≥ 30 needs v2 or later
)

// Verify reads the APK of size bytes from r and checks that Android would
// install it on every device inside its SDK range [minSdk, ∞): each scheme
// a device of that range relies on must be present and verify, with every
// content digest and signature. It returns *Error when Android would
// refuse the file.
func Verify(r io.ReaderAt, size int64) (Info, error) {
	return VerifyWith(r, size, nil)
}

// VerifyWith is Verify for a file whose chunk digests were computed while
// it streamed through known (nil: none), which must have seen every byte
// of it: those chunks are not read again.
func VerifyWith(r io.ReaderAt, size int64, known *Chunks) (Info, error) {
	l, err := findLayout(r, size)
	if err != nil {
		return Info{}, err
	}
	zr, byName, err := openZip(r, l)
	if err != nil {
		return Info{}, err
	}
	mf, ok := byName["AndroidManifest.xml"]
	if !ok {
		return Info{}, verdict("it has no AndroidManifest.xml")
	}
	xml, err := readEntry(mf, maxManifestXML)
	if err != nil {
		return Info{}, err
	}
	info, err := parseManifest(xml)
	if err != nil {
		return Info{}, err
	}
	info.ABIs = nativeABIs(zr.File)

	blockOffset, blocks, err := findSigningBlock(r, l)
	if err != nil {
		return Info{}, err
	}
	d := &digester{r: r, l: l, blockOffset: blockOffset, known: known}
	var v2, v3, v31 *schemeResult
	if b, ok := blocks[idV2]; ok {
		if v2, err = verifyV2(b, d); err != nil {
			return Info{}, err
		}
		info.Schemes = append(info.Schemes, 2)
	}
	if b, ok := blocks[idV31]; ok {
		if v31, err = verifyV3(b, d, "v3.1", max(info.MinSdk, sdkP), maxSdk); err != nil {
			return Info{}, err
		}
	}
	if b, ok := blocks[idV3]; ok {
		top := maxSdk
		if v31 != nil {
			top = v31.minSdk - 1
		}
		if v3, err = verifyV3(b, d, "v3", max(info.MinSdk, sdkP), top); err != nil {
			return Info{}, err
		}
		info.Schemes = append(info.Schemes, 3)
	}
	if v31 != nil {
		if v3 == nil {
			return Info{}, verdict("it has a v3.1 signature but no v3 signature")
		}
		info.Schemes = append(info.Schemes, 31)
	}
	if v2 != nil && v2.strippedV3 && v3 == nil {
		return Info{}, verdict("its v2 signature says it was also signed with v3, but the v3 signature is missing")
	}
	var v1 *schemeResult
	// Devices below SDK 24 check only v1; those below SDK 28 know no v3,
	// so without v2 they fall back to v1 too.
	if info.MinSdk < sdkN || (v2 == nil && (v3 == nil || info.MinSdk < sdkP)) {
		if v1, err = verifyV1(zr, byName, info.MinSdk, blocks); err != nil {
			return Info{}, err
		}
		info.Schemes = append([]int{1}, info.Schemes...)
	}
	if info.TargetSdk >= sdkR && v2 == nil && v3 == nil {
		return Info{}, verdict("targetSdkVersion %d requires an APK Signature Scheme v2 or later signature, and it has only a JAR (v1) signature", info.TargetSdk)
	}
	if v1 != nil && v2 != nil && !sameCerts(v1.certs, v2.certs) {
		return Info{}, verdict("its JAR (v1) and v2 signers differ")
	}
	older := v2
	if older == nil {
		older = v1
	}
	newest := older
	for _, v := range []*schemeResult{v3, v31} {
		if v == nil {
			continue
		}
		if older != nil && !v.covers(older.certs) {
			return Info{}, verdict("its %s signer is neither its older schemes' signer nor a rotation of it", v.name)
		}
		newest = v
	}
	if len(newest.certs) != 1 {
		return Info{}, verdict("it has %d signers; only one is supported", len(newest.certs))
	}
	info.SignerSHA256 = newest.certs[0]
	info.Lineage = newest.lineage
	return info, nil
}

const maxSdk = 0x7fffffff

// schemeResult is who signed a scheme's block.
type schemeResult struct {
	name       string
	certs      []string // SHA-256 hex of each signer's certificate
	lineage    []string // of the signer for the newest SDKs
	minSdk     int      // lowest SDK a v3 signer covers
	strippedV3 bool     // a v2 signer says v3 was also applied
}

// covers reports whether the signers of an older scheme are this scheme's
// signer or an ancestor in its lineage.
func (s *schemeResult) covers(older []string) bool {
	if len(older) != 1 {
		return false
	}
	if len(s.certs) == 1 && s.certs[0] == older[0] {
		return true
	}
	for _, c := range s.lineage {
		if c == older[0] {
			return true
		}
	}
	return false
}

func sameCerts(a, b []string) bool {
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, ",") == strings.Join(b, ",")
}
