package apk

import (
	"archive/zip"
	"encoding/binary"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Chunk types of Android's binary XML (ResourceTypes.h).
const (
	chunkStringPool  = 0x0001
	chunkXML         = 0x0003
	chunkStartElem   = 0x0102
	chunkEndElem     = 0x0103
	chunkResourceMap = 0x0180
)

// Typed value kinds (Res_value::dataType).
const (
	typeReference = 0x01
	typeString    = 0x03
	typeIntDec    = 0x10
	typeIntHex    = 0x11
	typeBoolean   = 0x12
)

// Resource ids of the android: attributes read from the manifest.
const (
	attrDebuggable       = 0x0101000f
	attrMinSdkVersion    = 0x0101020c
	attrVersionCode      = 0x0101021b
	attrVersionName      = 0x0101021c
	attrTargetSdkVersion = 0x01010270
	attrTestOnly         = 0x01010272
	attrVersionCodeMajor = 0x01010576
)

const maxDepth = 64

// axml is a binary XML document being read.
type axml struct {
	b        []byte
	pool     []byte   // the string pool chunk
	offsets  []byte   // its string offsets, 4 bytes each
	strStart int      // offset of the string data inside pool
	utf8     bool     // pool strings are UTF-8
	resMap   []uint32 // resource id of string i, for attribute names
}

// attr is one attribute of an element.
type attr struct {
	ns, name uint32
	raw      uint32
	kind     byte
	data     uint32
}

// parseManifest reads the fields Info needs from a binary
// AndroidManifest.xml: the root <manifest>, and its <uses-sdk> and
// <application> children.
func parseManifest(b []byte) (Info, error) {
	bad := func(format string, args ...any) error {
		return verdict("its AndroidManifest.xml is malformed: "+format, args...)
	}
	if len(b) < 8 || binary.LittleEndian.Uint16(b) != chunkXML {
		return Info{}, bad("it is not binary XML")
	}
	hdr := int(binary.LittleEndian.Uint16(b[2:]))
	size := int(binary.LittleEndian.Uint32(b[4:]))
	if hdr < 8 || size < hdr || size > len(b) {
		return Info{}, bad("the document header is out of bounds")
	}
	x := &axml{b: b[:size]}
	info := Info{MinSdk: 1}
	var (
		stack                  []string
		sawManifest, sawTarget bool
		code, major            uint32
	)
	for off := hdr; off < size; {
		if size-off < 8 {
			return Info{}, bad("a chunk header is cut short at offset %d", off)
		}
		typ := binary.LittleEndian.Uint16(x.b[off:])
		chdr := int(binary.LittleEndian.Uint16(x.b[off+2:]))
		clen := int(binary.LittleEndian.Uint32(x.b[off+4:]))
		if chdr < 8 || clen < chdr || clen > size-off {
			return Info{}, bad("the chunk at offset %d has a bad size", off)
		}
		c := x.b[off : off+clen]
		switch typ {
		case chunkStringPool:
			if err := x.readPool(c, chdr); err != nil {
				return Info{}, err
			}
		case chunkResourceMap:
			n := (clen - chdr) / 4
			x.resMap = make([]uint32, n)
			for i := range n {
				x.resMap[i] = binary.LittleEndian.Uint32(c[chdr+4*i:])
			}
		case chunkStartElem:
			name, attrs, err := x.element(c, chdr)
			if err != nil {
				return Info{}, err
			}
			if len(stack) >= maxDepth {
				return Info{}, bad("elements nest deeper than %d", maxDepth)
			}
			stack = append(stack, name)
			switch {
			case len(stack) == 1 && name != "manifest":
				return Info{}, bad("the root element is <%s>, not <manifest>", name)
			case len(stack) == 1:
				sawManifest = true
				for _, a := range attrs {
					var err error
					switch x.id(a) {
					case 0:
						if a.ns == 0xffffffff && x.str(a.name) == "package" {
							info.Package, err = x.text(a, "package")
						}
					case attrVersionCode:
						code, err = x.integer(a, "versionCode")
					case attrVersionCodeMajor:
						major, err = x.integer(a, "versionCodeMajor")
					case attrVersionName:
						info.VersionName, err = x.text(a, "versionName")
						if err != nil { // a resource reference: unknown here
							info.VersionName, err = "", nil
						}
					}
					if err != nil {
						return Info{}, err
					}
				}
			case len(stack) == 2 && name == "uses-sdk":
				for _, a := range attrs {
					var err error
					switch x.id(a) {
					case attrMinSdkVersion:
						info.MinSdk, err = x.sdk(a, "minSdkVersion")
					case attrTargetSdkVersion:
						info.TargetSdk, err = x.sdk(a, "targetSdkVersion")
						sawTarget = true
					}
					if err != nil {
						return Info{}, err
					}
				}
			case len(stack) == 2 && name == "application":
				for _, a := range attrs {
					var err error
					switch x.id(a) {
					case attrDebuggable:
						info.Debuggable, err = x.boolean(a, "debuggable")
					case attrTestOnly:
						info.TestOnly, err = x.boolean(a, "testOnly")
					}
					if err != nil {
						return Info{}, err
					}
				}
			}
		case chunkEndElem:
			if len(stack) == 0 {
				return Info{}, bad("an element ends that never started")
			}
			stack = stack[:len(stack)-1]
		}
		off += clen
	}
	if !sawManifest {
		return Info{}, bad("it has no <manifest> element")
	}
	if info.Package == "" {
		return Info{}, bad("<manifest> has no package name")
	}
	if !sawTarget {
		info.TargetSdk = info.MinSdk
	}
	info.VersionCode = int64(major)<<32 | int64(code)
	return info, nil
}

func (x *axml) readPool(c []byte, hdr int) error {
	if hdr < 28 {
		return verdict("its AndroidManifest.xml is malformed: the string pool header is too short")
	}
	count := int(binary.LittleEndian.Uint32(c[8:]))
	flags := binary.LittleEndian.Uint32(c[16:])
	start := int(binary.LittleEndian.Uint32(c[20:]))
	if count > (len(c)-hdr)/4 || start > len(c) || start < hdr+4*count {
		return verdict("its AndroidManifest.xml is malformed: the string pool (%d strings) does not fit", count)
	}
	x.pool, x.offsets, x.strStart, x.utf8 = c, c[hdr:hdr+4*count], start, flags&(1<<8) != 0
	return nil
}

// str returns string i of the pool, or "" when it is absent or malformed.
func (x *axml) str(i uint32) string {
	if uint64(i) >= uint64(len(x.offsets)/4) {
		return ""
	}
	p := x.pool[x.strStart:]
	off := int(binary.LittleEndian.Uint32(x.offsets[4*i:]))
	if off < 0 || off >= len(p) {
		return ""
	}
	p = p[off:]
	if x.utf8 {
		_, p, ok := lenUTF8(p) // length in UTF-16 units, unused
		if !ok {
			return ""
		}
		n, p, ok := lenUTF8(p)
		if !ok || n > len(p) || !utf8.Valid(p[:n]) {
			return ""
		}
		return string(p[:n])
	}
	if len(p) < 2 {
		return ""
	}
	n := int(binary.LittleEndian.Uint16(p))
	p = p[2:]
	if n&0x8000 != 0 {
		if len(p) < 2 {
			return ""
		}
		n = (n&0x7fff)<<16 | int(binary.LittleEndian.Uint16(p))
		p = p[2:]
	}
	if n > len(p)/2 {
		return ""
	}
	u := make([]uint16, n)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(p[2*i:])
	}
	return string(utf16.Decode(u))
}

// lenUTF8 reads a UTF-8 pool string length: one byte, or two when the
// first has its high bit set.
func lenUTF8(p []byte) (int, []byte, bool) {
	if len(p) < 1 {
		return 0, nil, false
	}
	if p[0]&0x80 == 0 {
		return int(p[0]), p[1:], true
	}
	if len(p) < 2 {
		return 0, nil, false
	}
	return int(p[0]&0x7f)<<8 | int(p[1]), p[2:], true
}

// element reads a start-element chunk's name and attributes.
func (x *axml) element(c []byte, hdr int) (string, []attr, error) {
	bad := verdict("its AndroidManifest.xml is malformed: an element does not fit its chunk")
	if len(c) < hdr+20 {
		return "", nil, bad
	}
	e := c[hdr:]
	name := x.str(binary.LittleEndian.Uint32(e[4:]))
	start := int(binary.LittleEndian.Uint16(e[8:]))
	step := int(binary.LittleEndian.Uint16(e[10:]))
	count := int(binary.LittleEndian.Uint16(e[12:]))
	if count > 0 && (step < 20 || start+count*step > len(e)) {
		return "", nil, bad
	}
	attrs := make([]attr, count)
	for i := range attrs {
		a := e[start+i*step:]
		attrs[i] = attr{
			ns:   binary.LittleEndian.Uint32(a),
			name: binary.LittleEndian.Uint32(a[4:]),
			raw:  binary.LittleEndian.Uint32(a[8:]),
			kind: a[15],
			data: binary.LittleEndian.Uint32(a[16:]),
		}
	}
	return name, attrs, nil
}

// id returns the resource id of a's name, 0 when it has none.
func (x *axml) id(a attr) uint32 {
	if uint64(a.name) < uint64(len(x.resMap)) {
		return x.resMap[a.name]
	}
	return 0
}

func (x *axml) text(a attr, field string) (string, error) {
	if a.kind == typeString {
		return x.str(a.data), nil
	}
	if a.raw != 0xffffffff {
		return x.str(a.raw), nil
	}
	return "", verdict("its manifest's %s is not a string (value type 0x%02x)", field, a.kind)
}

func (x *axml) integer(a attr, field string) (uint32, error) {
	switch a.kind {
	case typeIntDec, typeIntHex:
		return a.data, nil
	case typeString:
		n, err := strconv.ParseUint(strings.TrimSpace(x.str(a.data)), 10, 32)
		if err == nil {
			return uint32(n), nil
		}
	}
	return 0, verdict("its manifest's %s is not an integer (value type 0x%02x)", field, a.kind)
}

func (x *axml) boolean(a attr, field string) (bool, error) {
	switch a.kind {
	case typeBoolean, typeIntDec, typeIntHex:
		return a.data != 0, nil
	case typeString:
		if b, err := strconv.ParseBool(x.str(a.data)); err == nil {
			return b, nil
		}
	}
	if a.kind == typeReference {
		return false, verdict("its manifest's %s is a resource reference, which cannot be resolved here", field)
	}
	return false, verdict("its manifest's %s is not a boolean (value type 0x%02x)", field, a.kind)
}

// sdk reads an API level; a codename (a preview SDK) is refused, since no
// released device installs such a build.
func (x *axml) sdk(a attr, field string) (int, error) {
	if a.kind == typeString {
		s := x.str(a.data)
		if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 10000 {
			return n, nil
		}
		return 0, verdict("its manifest's %s %q is a preview codename, not an API level", field, s)
	}
	n, err := x.integer(a, field)
	if err != nil {
		return 0, err
	}
	if n == 0 || n >= 10000 {
		return 0, verdict("its manifest's %s %d is not an API level", field, n)
	}
	return int(n), nil
}

// nativeABIs lists the directories lib/<abi>/ that hold at least one file.
func nativeABIs(files []*zip.File) []string {
	seen := map[string]bool{}
	for _, f := range files {
		rest, ok := strings.CutPrefix(f.Name, "lib/")
		if !ok {
			continue
		}
		abi, file, ok := strings.Cut(rest, "/")
		if ok && abi != "" && file != "" && !strings.HasSuffix(file, "/") {
			seen[abi] = true
		}
	}
	abis := make([]string, 0, len(seen))
	for abi := range seen {
		abis = append(abis, abi)
	}
	sort.Strings(abis)
	return abis
}
