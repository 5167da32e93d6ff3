package apk

import (
	"archive/zip"
	"encoding/binary"
	"io"
)

// Bounds on what a hostile file can make the parser hold or do.
const (
	maxCentralDir   = 16 << 20 // bytes of central directory
	maxManifestXML  = 4 << 20  // uncompressed AndroidManifest.xml
	maxMetaFile     = 8 << 20  // one uncompressed META-INF signature file
	maxV1Total      = 8 << 30  // uncompressed bytes digested by v1 verification
	maxEntryNameLen = 4096
)

const (
	eocdSig      = 0x06054b50
	eocdLen      = 22
	zip64LocSig  = 0x07064b50
	zip64LocLen  = 20
	maxZipComent = 0xffff
)

// layout is where an APK's ZIP sections lie.
type layout struct {
	size       int64
	cdOffset   int64 // start of the central directory
	eocdOffset int64 // start of the end of central directory record
	eocd       []byte
}

// findLayout locates the end of central directory record and checks that
// the central directory sits right before it, as APK signing requires.
func findLayout(r io.ReaderAt, size int64) (layout, error) {
	if size < eocdLen {
		return layout{}, verdict("the file is too short to be a ZIP archive (%d bytes)", size)
	}
	tailLen := min(size, eocdLen+maxZipComent)
	tail := make([]byte, tailLen)
	if _, err := r.ReadAt(tail, size-tailLen); err != nil {
		return layout{}, ioErr(err)
	}
	at := -1
	// The record whose comment length reaches exactly the end of the file.
	for i := len(tail) - eocdLen; i >= 0; i-- {
		if binary.LittleEndian.Uint32(tail[i:]) == eocdSig &&
			int(binary.LittleEndian.Uint16(tail[i+20:]))+eocdLen == len(tail)-i {
			at = i
			break
		}
	}
	if at < 0 {
		return layout{}, verdict("it is not a ZIP archive: no end of central directory record")
	}
	l := layout{size: size, eocdOffset: size - tailLen + int64(at), eocd: tail[at:]}
	if l.eocdOffset >= zip64LocLen {
		var loc [4]byte
		if _, err := r.ReadAt(loc[:], l.eocdOffset-zip64LocLen); err != nil {
			return layout{}, ioErr(err)
		}
		if binary.LittleEndian.Uint32(loc[:]) == zip64LocSig {
			return layout{}, verdict("it is a ZIP64 archive, which APKs cannot be")
		}
	}
	e := l.eocd
	if binary.LittleEndian.Uint16(e[4:]) != 0 || binary.LittleEndian.Uint16(e[6:]) != 0 ||
		binary.LittleEndian.Uint16(e[8:]) != binary.LittleEndian.Uint16(e[10:]) {
		return layout{}, verdict("it is a multi-disk ZIP archive")
	}
	cdSize := int64(binary.LittleEndian.Uint32(e[12:]))
	l.cdOffset = int64(binary.LittleEndian.Uint32(e[16:]))
	switch {
	case cdSize > maxCentralDir:
		return layout{}, verdict("its central directory of %d bytes exceeds the limit of %d", cdSize, maxCentralDir)
	case l.cdOffset+cdSize != l.eocdOffset:
		return layout{}, verdict("its central directory (offset %d, %d bytes) does not end where the end record starts (%d)", l.cdOffset, cdSize, l.eocdOffset)
	}
	return l, nil
}

// openZip lists the archive's entries, refusing duplicates and odd names.
func openZip(r io.ReaderAt, l layout) (*zip.Reader, map[string]*zip.File, error) {
	zr, err := zip.NewReader(io.NewSectionReader(r, 0, l.size), l.size)
	if err != nil && err != zip.ErrInsecurePath {
		return nil, nil, verdict("it is not a valid ZIP archive: %v", err)
	}
	byName := make(map[string]*zip.File, len(zr.File))
	for _, f := range zr.File {
		if len(f.Name) > maxEntryNameLen {
			return nil, nil, verdict("an entry name is longer than %d bytes", maxEntryNameLen)
		}
		if _, dup := byName[f.Name]; dup {
			return nil, nil, verdict("the entry %q appears twice", f.Name)
		}
		byName[f.Name] = f
	}
	return zr, byName, nil
}

// readEntry decompresses f, refusing one larger than limit.
func readEntry(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, verdict("the entry %q (%d bytes) exceeds the limit of %d bytes", f.Name, f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, verdict("the entry %q cannot be read: %v", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, verdict("the entry %q cannot be read: %v", f.Name, err)
	}
	if int64(len(b)) > limit {
		return nil, verdict("the entry %q exceeds the limit of %d bytes", f.Name, limit)
	}
	return b, nil
}
