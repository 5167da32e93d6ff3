package apk

import (
	"bytes"
	"crypto"
	"crypto/dsa" //nolint:staticcheck // Android still accepts DSA signers
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"io"
	"math/big"
	"runtime"
	"slices"
	"sort"
	"sync"
)

const (
	blockMagic    = "APK Sig Block 42"
	maxBlock      = 16 << 20 // bytes of APK Signing Block
	maxSigners    = 16
	maxListLen    = 64 // digests, signatures, certificates or attributes per signer
	chunkSize     = 1 << 20
	attrRotation  = 0x3ba06f8c // v3 proof-of-rotation
	attrStripV2   = 0xbeeff00d // v2: the APK was also signed with scheme N
	lineageFormat = 1
)

// findSigningBlock reads the APK Signing Block that ends where the central
// directory starts, returning its offset (the central directory's offset
// when there is none) and its id-value pairs.
func findSigningBlock(r io.ReaderAt, l layout) (int64, map[uint32][]byte, error) {
	if l.cdOffset < 32 {
		return l.cdOffset, nil, nil
	}
	var foot [24]byte
	if _, err := r.ReadAt(foot[:], l.cdOffset-24); err != nil {
		return 0, nil, ioErr(err)
	}
	if string(foot[8:]) != blockMagic {
		return l.cdOffset, nil, nil
	}
	size := binary.LittleEndian.Uint64(foot[:])
	if size < 24 || size > maxBlock || int64(size)+8 > l.cdOffset {
		return 0, nil, verdict("its APK Signing Block size %d is out of bounds", size)
	}
	offset := l.cdOffset - int64(size) - 8
	block := make([]byte, size+8)
	if _, err := r.ReadAt(block, offset); err != nil {
		return 0, nil, ioErr(err)
	}
	if binary.LittleEndian.Uint64(block) != size {
		return 0, nil, verdict("its APK Signing Block's two size fields differ")
	}
	pairs := map[uint32][]byte{}
	for p := block[8 : len(block)-24]; len(p) > 0; {
		if len(p) < 8 {
			return 0, nil, verdict("its APK Signing Block has a pair cut short")
		}
		n := binary.LittleEndian.Uint64(p)
		if n < 4 || n > uint64(len(p)-8) {
			return 0, nil, verdict("its APK Signing Block has a pair of length %d out of bounds", n)
		}
		id := binary.LittleEndian.Uint32(p[8:])
		if _, dup := pairs[id]; !dup {
			pairs[id] = p[12 : 8+n]
		}
		p = p[8+n:]
	}
	return offset, pairs, nil
}

// buf reads little-endian values and length-prefixed slices, remembering
// the first overrun.
type buf struct {
	b   []byte
	bad bool
}

func (b *buf) u32() uint32 {
	if len(b.b) < 4 {
		b.bad, b.b = true, nil
		return 0
	}
	v := binary.LittleEndian.Uint32(b.b)
	b.b = b.b[4:]
	return v
}

// lp returns the next uint32-length-prefixed slice.
func (b *buf) lp() []byte {
	n := b.u32()
	if b.bad || uint64(n) > uint64(len(b.b)) {
		b.bad, b.b = true, nil
		return nil
	}
	v := b.b[:n]
	b.b = b.b[n:]
	return v
}

// list splits a length-prefixed sequence of length-prefixed elements.
func (b *buf) list(what string) ([][]byte, error) {
	seq := buf{b: b.lp()}
	var out [][]byte
	for len(seq.b) > 0 && !seq.bad {
		if len(out) == maxListLen {
			return nil, verdict("it has more than %d %s", maxListLen, what)
		}
		out = append(out, seq.lp())
	}
	if b.bad || seq.bad {
		return nil, verdict("its %s are malformed", what)
	}
	return out, nil
}

// sigAlg is an APK Signature Scheme signature algorithm.
type sigAlg struct {
	hash   crypto.Hash
	kind   byte // 'p' RSA-PSS, 'r' RSA PKCS#1 v1.5, 'e' ECDSA, 'd' DSA
	digest int  // content digest: 1 CHUNKED_SHA256, 2 CHUNKED_SHA512
}

var sigAlgs = map[uint32]sigAlg{
	0x0101: {crypto.SHA256, 'p', 1},
	0x0102: {crypto.SHA512, 'p', 2},
	0x0103: {crypto.SHA256, 'r', 1},
	0x0104: {crypto.SHA512, 'r', 2},
	0x0201: {crypto.SHA256, 'e', 1},
	0x0202: {crypto.SHA512, 'e', 2},
	0x0301: {crypto.SHA256, 'd', 1},
}

// checkSignature verifies sig over msg with pub.
func checkSignature(alg sigAlg, pub crypto.PublicKey, msg, sig []byte) bool {
	h := alg.hash.New()
	h.Write(msg)
	sum := h.Sum(nil)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch alg.kind {
		case 'r':
			return rsa.VerifyPKCS1v15(k, alg.hash, sum, sig) == nil
		case 'p':
			return rsa.VerifyPSS(k, alg.hash, sum, sig, &rsa.PSSOptions{SaltLength: alg.hash.Size(), Hash: alg.hash}) == nil
		}
	case *ecdsa.PublicKey:
		return alg.kind == 'e' && ecdsa.VerifyASN1(k, sum, sig)
	case *dsa.PublicKey:
		var rs struct{ R, S *big.Int }
		if alg.kind != 'd' || k.Q == nil {
			return false
		}
		if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) > 0 {
			return false
		}
		if n := (k.Q.BitLen() + 7) / 8; len(sum) > n {
			sum = sum[:n]
		}
		return dsa.Verify(k, sum, rs.R, rs.S)
	}
	return false
}

// signer is one parsed and verified v2 or v3 signer.
type signer struct {
	cert       string // SHA-256 hex of its first certificate
	minSdk     int
	maxSdk     int
	lineage    []string
	strippedV3 bool
}

// verifyV2 checks every signer of an APK Signature Scheme v2 block.
func verifyV2(block []byte, d *digester) (*schemeResult, error) {
	signers, err := verifySigners(block, d, "v2", false)
	if err != nil {
		return nil, err
	}
	res := &schemeResult{name: "v2"}
	for _, s := range signers {
		res.certs = append(res.certs, s.cert)
		res.strippedV3 = res.strippedV3 || s.strippedV3
	}
	return res, nil
}

// verifyV3 checks a v3 or v3.1 block, whose signers must cover the SDK
// range [from, to] with no gap or overlap.
func verifyV3(block []byte, d *digester, name string, from, to int) (*schemeResult, error) {
	signers, err := verifySigners(block, d, name, true)
	if err != nil {
		return nil, err
	}
	sort.Slice(signers, func(i, j int) bool { return signers[i].minSdk < signers[j].minSdk })
	for i := 1; i < len(signers); i++ {
		if signers[i].minSdk <= signers[i-1].maxSdk {
			return nil, verdict("its %s signers' SDK ranges overlap", name)
		}
	}
	res := &schemeResult{name: name, minSdk: signers[0].minSdk}
	if name == "v3.1" {
		from = res.minSdk // v3.1 starts where its signers say; v3 covers below
	}
	next := from
	var used []string // the certificates of the signers the range relies on
	for _, s := range signers {
		if s.maxSdk < next {
			continue
		}
		if s.minSdk > next {
			break
		}
		next = s.maxSdk + 1
		res.certs, res.lineage = []string{s.cert}, s.lineage
		used = append(used, s.cert)
		if s.maxSdk >= to {
			break
		}
	}
	if from <= to && next <= to {
		return nil, verdict("its %s signers do not cover SDK versions %d to %d", name, next, to)
	}
	// A device verifies only the signer of its SDK, and updates an app
	// only with its signer or a rotation of it: each signer of the range
	// must be the newest one or an ancestor in its lineage.
	for _, c := range used {
		if c != res.certs[0] && !slices.Contains(res.lineage, c) {
			return nil, verdict("its %s signer for older SDK versions is neither its newest signer nor in its lineage", name)
		}
	}
	if res.certs == nil { // the APK's range lies outside the block's: use its newest signer
		last := signers[len(signers)-1]
		res.certs, res.lineage = []string{last.cert}, last.lineage
	}
	return res, nil
}

// verifySigners parses and verifies each signer of a v2 (v3 false) or v3
// block: the signatures over its signed data, the public key against its
// certificate, and the content digests of the APK.
func verifySigners(block []byte, d *digester, name string, v3 bool) ([]signer, error) {
	outer := buf{b: block}
	list, err := outer.list(name + " signers")
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, verdict("its %s block has no signers", name)
	}
	if len(list) > maxSigners {
		return nil, verdict("its %s block has more than %d signers", name, maxSigners)
	}
	var out []signer
	for i, raw := range list {
		s, err := verifySigner(raw, d, v3)
		if err != nil {
			if e, ok := err.(*Error); ok {
				return nil, verdict("its %s signer #%d does not verify: %s", name, i+1, e.Reason)
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func verifySigner(raw []byte, d *digester, v3 bool) (signer, error) {
	b := buf{b: raw}
	signedData := b.lp()
	var s signer
	if v3 {
		s.minSdk, s.maxSdk = int(b.u32()), int(b.u32())
	}
	sigs, err := b.list("signatures")
	if err != nil {
		return s, err
	}
	pubDER := b.lp()
	if b.bad {
		return s, verdict("the signer record is malformed")
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return s, verdict("its public key cannot be parsed: %v", err)
	}
	// Every signature of a supported algorithm must verify; at least one must.
	verified := map[uint32]bool{}
	var sigOrder []uint32
	for _, raw := range sigs {
		sb := buf{b: raw}
		id := sb.u32()
		sig := sb.lp()
		if sb.bad {
			return s, verdict("a signature record is malformed")
		}
		sigOrder = append(sigOrder, id)
		alg, ok := sigAlgs[id]
		if !ok {
			continue // e.g. the verity variants; the platform picks another
		}
		if !checkSignature(alg, pub, signedData, sig) {
			return s, verdict("its signature (algorithm 0x%04x) does not match its signed data", id)
		}
		verified[id] = true
	}
	if len(verified) == 0 {
		return s, verdict("it has no signature with a supported algorithm")
	}
	sd := buf{b: signedData}
	digests, err := sd.list("digests")
	if err != nil {
		return s, err
	}
	certs, err := sd.list("certificates")
	if err != nil {
		return s, err
	}
	if v3 {
		if min, max := int(sd.u32()), int(sd.u32()); min != s.minSdk || max != s.maxSdk {
			return s, verdict("its signed SDK range %d-%d differs from its record's %d-%d", min, max, s.minSdk, s.maxSdk)
		}
		if s.minSdk > s.maxSdk {
			return s, verdict("its SDK range %d-%d is empty", s.minSdk, s.maxSdk)
		}
	}
	attrs, err := sd.list("additional attributes")
	if err != nil {
		return s, err
	}
	if len(certs) == 0 {
		return s, verdict("it has no certificate")
	}
	cert, err := x509.ParseCertificate(certs[0])
	if err != nil {
		return s, verdict("its certificate cannot be parsed: %v", err)
	}
	if !bytes.Equal(cert.RawSubjectPublicKeyInfo, pubDER) {
		return s, verdict("its public key is not its certificate's")
	}
	s.cert = certHash(certs[0])
	// The digests record must list the same algorithms as the signatures.
	if len(digests) != len(sigOrder) {
		return s, verdict("it lists %d digests for %d signatures", len(digests), len(sigOrder))
	}
	for i, raw := range digests {
		db := buf{b: raw}
		id := db.u32()
		want := db.lp()
		if db.bad || id != sigOrder[i] {
			return s, verdict("its digests and signatures name different algorithms")
		}
		if !verified[id] {
			continue
		}
		got, err := d.digest(sigAlgs[id].digest)
		if err != nil {
			return s, err
		}
		if !bytes.Equal(got, want) {
			return s, verdict("the APK's contents do not match its digest (algorithm 0x%04x): the file was changed after signing", id)
		}
	}
	for _, raw := range attrs {
		ab := buf{b: raw}
		id := ab.u32()
		if ab.bad {
			return s, verdict("an additional attribute is malformed")
		}
		switch {
		case !v3 && id == attrStripV2:
			s.strippedV3 = s.strippedV3 || ab.u32() == 3
		case v3 && id == attrRotation:
			if s.lineage, err = parseLineage(ab.b, certs[0]); err != nil {
				return s, err
			}
		}
	}
	return s, nil
}

// parseLineage verifies a v3 proof-of-rotation record: each certificate is
// signed by the one before it, and the last is the signer's own.
func parseLineage(b []byte, signerCert []byte) ([]string, error) {
	r := buf{b: b}
	if r.u32() != lineageFormat {
		return nil, verdict("its proof-of-rotation record has an unknown version")
	}
	var (
		out     []string
		prev    *x509.Certificate
		prevAlg uint32
		last    []byte
	)
	for len(r.b) > 0 {
		if len(out) == maxListLen {
			return nil, verdict("its proof-of-rotation has more than %d certificates", maxListLen)
		}
		node := buf{b: r.lp()}
		signed := node.lp()
		_ = node.u32() // flags: capabilities granted to this certificate
		alg := node.u32()
		sig := node.lp()
		sd := buf{b: signed}
		der := sd.lp()
		signedAlg := sd.u32()
		if r.bad || node.bad || sd.bad {
			return nil, verdict("its proof-of-rotation record is malformed")
		}
		if prev != nil {
			a, ok := sigAlgs[prevAlg]
			if !ok || signedAlg != prevAlg || !checkSignature(a, prev.PublicKey, signed, sig) {
				return nil, verdict("certificate #%d of its proof-of-rotation is not signed by the one before it", len(out)+1)
			}
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, verdict("certificate #%d of its proof-of-rotation cannot be parsed", len(out)+1)
		}
		prev, prevAlg, last = cert, alg, der
		out = append(out, certHash(der))
	}
	if len(out) == 0 || !bytes.Equal(last, signerCert) {
		return nil, verdict("its proof-of-rotation does not end with its signing certificate")
	}
	return out, nil
}

func certHash(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// digester computes the APK's content digests, each once: chunked hashes
// over the entries, the central directory and the end record (whose
// central directory offset reads as the signing block's offset).
type digester struct {
	r           io.ReaderAt
	l           layout
	blockOffset int64
	known       *Chunks // CHUNKED_SHA256 leaves computed while the file streamed; nil: none
	done        map[int][]byte
}

func (d *digester) digest(alg int) ([]byte, error) {
	if v, ok := d.done[alg]; ok {
		return v, nil
	}
	newHash := map[int]func() hash.Hash{1: sha256.New, 2: sha512.New}[alg]
	eocd := append([]byte(nil), d.l.eocd...)
	binary.LittleEndian.PutUint32(eocd[16:], uint32(d.blockOffset))
	sections := []*io.SectionReader{
		io.NewSectionReader(d.r, 0, d.blockOffset),
		io.NewSectionReader(d.r, d.l.cdOffset, d.l.eocdOffset-d.l.cdOffset),
		io.NewSectionReader(bytes.NewReader(eocd), 0, int64(len(eocd))),
	}
	var chunks int64
	for _, s := range sections {
		chunks += (s.Size() + chunkSize - 1) / chunkSize
	}
	var known [][]byte
	if alg == 1 && d.known != nil {
		known = d.known.sums
	}
	sums, err := chunkDigests(sections, int(chunks), newHash, known)
	if err != nil {
		return nil, err
	}
	top := newHash()
	var head [5]byte
	head[0] = 0x5a
	binary.LittleEndian.PutUint32(head[1:], uint32(chunks))
	top.Write(head[:])
	for _, sum := range sums {
		top.Write(sum)
	}
	if d.done == nil {
		d.done = map[int][]byte{}
	}
	d.done[alg] = top.Sum(nil)
	return d.done[alg], nil
}

// chunkDigests hashes every chunk of the sections, but for the full chunks
// of the first section (which starts at the file's first byte) whose digest
// is known: one goroutine reads them in order (object storage serves
// sequential reads best) into a few chunk buffers, and one worker per CPU
// hashes them.
func chunkDigests(sections []*io.SectionReader, chunks int, newHash func() hash.Hash, known [][]byte) ([][]byte, error) {
	workers := runtime.GOMAXPROCS(0)
	type job struct {
		i int
		b []byte
	}
	free := make(chan []byte, workers+1)
	for range workers + 1 {
		free <- make([]byte, chunkSize)
	}
	jobs := make(chan job)
	sums := make([][]byte, chunks)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			h := newHash()
			var head [5]byte
			head[0] = 0xa5
			for j := range jobs {
				h.Reset()
				binary.LittleEndian.PutUint32(head[1:], uint32(len(j.b)))
				h.Write(head[:])
				h.Write(j.b)
				sums[j.i] = h.Sum(nil)
				free <- j.b[:chunkSize]
			}
		})
	}
	var err error
	i := 0
read:
	for n, s := range sections {
		for off := int64(0); off < s.Size(); off += chunkSize {
			if n == 0 && i < len(known) && off+chunkSize <= s.Size() {
				sums[i] = known[i]
				i++
				continue
			}
			b := (<-free)[:min(chunkSize, s.Size()-off)]
			if _, err = s.ReadAt(b, off); err != nil {
				err = ioErr(err)
				break read
			}
			jobs <- job{i, b}
			i++
		}
	}
	close(jobs)
	wg.Wait()
	return sums, err
}

// Chunks computes, while a file streams through Write, the SHA-256 digests
// APK Signature Schemes v2 and later take of its 1 MiB chunks from its
// first byte (CHUNKED_SHA256), so that VerifyWith need not read those
// chunks again. It holds 32 bytes per MiB.
type Chunks struct {
	h    hash.Hash
	fill int      // bytes of the current chunk written
	sums [][]byte // digests of the full chunks, in order
}

// NewChunks returns an empty Chunks.
func NewChunks() *Chunks {
	c := &Chunks{h: sha256.New()}
	c.start()
	return c
}

func (c *Chunks) start() {
	var head [5]byte
	head[0] = 0xa5
	binary.LittleEndian.PutUint32(head[1:], chunkSize)
	c.h.Reset()
	c.h.Write(head[:])
}

// Write implements io.Writer; it never fails.
func (c *Chunks) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), chunkSize-c.fill)
		c.h.Write(p[:k])
		c.fill += k
		p = p[k:]
		if c.fill == chunkSize {
			c.sums = append(c.sums, c.h.Sum(nil))
			c.fill = 0
			c.start()
		}
	}
	return n, nil
}
