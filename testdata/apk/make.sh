#!/usr/bin/env bash
# Makes the APK fixtures in this folder with Debian's aapt, zipalign, apksigner,
# keytool and android-framework-res:
#   apt-get install -y aapt zipalign apksigner android-framework-res default-jdk-headless zip
# The keystores (test keys, password "wemesse") are kept so that a re-run signs
# with the same certificates; delete them to make new ones. The APKs are
# committed, so the tests need none of these tools.
set -euo pipefail
cd "$(dirname "$0")"
FRAMEWORK=/usr/share/android-framework-res/framework-res.apk
PKG=org.wemesse.app
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

key() { # key NAME KEYALG [keysize]
  [ -f "$1.jks" ] && return
  keytool -genkeypair -keystore "$1.jks" -storepass wemesse -keypass wemesse -alias "$1" \
    -keyalg "$2" -keysize "$3" -validity 36500 -dname "CN=Wemesse test $1" >/dev/null 2>&1
}
key signer-a RSA 2048
key signer-b EC 256
key signer-c RSA 2048

# build OUT PACKAGE VERSIONCODE MINSDK TARGETSDK [EXTRA_APPLICATION_ATTRS] [ABI...]
# makes an unsigned, aligned APK: a manifest, one stored asset, and a
# native library per ABI.
build() {
  local out=$1 pkg=$2 vc=$3 min=$4 target=$5 attrs=${6:-}; shift 6 || shift $#
  local dir="$work/$out.d"
  rm -rf "$dir"; mkdir -p "$dir/assets"
  cat > "$dir/AndroidManifest.xml" <<XML
<?xml version="1.0" encoding="utf-8"?>
<manifest xmlns:android="http://schemas.android.com/apk/res/android"
    package="$pkg" android:versionCode="$vc" android:versionName="1.0.$vc">
  <uses-sdk android:minSdkVersion="$min" android:targetSdkVersion="$target"/>
  <application android:label="Wemesse" android:hasCode="false" $attrs/>
</manifest>
XML
  printf 'hello wemesse %s\n' "$out" > "$dir/assets/hello.txt"
  aapt package -f -0 txt -M "$dir/AndroidManifest.xml" -A "$dir/assets" -I "$FRAMEWORK" -F "$work/$out.raw.apk" >/dev/null
  for abi in "$@"; do
    mkdir -p "$dir/lib/$abi"
    printf '\177ELF fake %s library\n' "$abi" > "$dir/lib/$abi/libwemesse.so"
    (cd "$dir" && aapt add -0 so "$work/$out.raw.apk" "lib/$abi/libwemesse.so" >/dev/null)
  done
  zipalign -f 4 "$work/$out.raw.apk" "$work/$out.unsigned.apk"
}

# sign OUT [apksigner options...]: signs $work/OUT.unsigned.apk into OUT.apk.
sign() {
  local out=$1; shift
  apksigner sign --v4-signing-enabled false "$@" --out "$out.apk" "$work/$out.unsigned.apk"
}
A=(--ks signer-a.jks --ks-pass pass:wemesse --ks-key-alias signer-a)
B=(--ks signer-b.jks --ks-pass pass:wemesse --ks-key-alias signer-b)
C=(--ks signer-c.jks --ks-pass pass:wemesse --ks-key-alias signer-c)

# Accepted by apksigner and by the upload rules (in this order of upload).
# (jarsigner.apk, signed by the JDK's jarsigner, has PKCS#7 signed attributes.)
build good "$PKG" 10 24 34 ""
sign good "${A[@]}" --v1-signing-enabled false --v2-signing-enabled true --v3-signing-enabled true
build v1only "$PKG" 11 21 29 ""
sign v1only "${A[@]}" --v1-signing-enabled true --v2-signing-enabled false --v3-signing-enabled false
build arm64 "$PKG" 12 24 34 "" arm64-v8a
sign arm64 "${A[@]}"
build multiabi "$PKG" 13 21 34 "" armeabi-v7a x86
sign multiabi "${A[@]}"
build newer "$PKG" 20 24 34 ""
sign newer "${A[@]}"
build newest "$PKG" 30 24 34 ""
sign newest "${A[@]}"
build newest-arm64 "$PKG" 31 24 34 "" arm64-v8a
sign newest-arm64 "${A[@]}"
cp v1only.apk "$work/jar.apk"
(cd "$work" && zip -q -d jar.apk 'META-INF/*')
jarsigner -keystore signer-a.jks -storepass wemesse -sigalg SHA256withRSA -digestalg SHA-256 \
  -signedjar jarsigner.apk "$work/jar.apk" signer-a >/dev/null
# Signed by signer-a, then rotated to signer-b (EC) with a v3 lineage.
[ -f lineage-a-b.bin ] || apksigner rotate --out lineage-a-b.bin --old-signer "${A[@]}" --new-signer "${B[@]}"
build rotated "$PKG" 40 24 34 ""
sign rotated "${A[@]}" --next-signer "${B[@]}" --lineage lineage-a-b.bin
build rotated50 "$PKG" 50 24 34 ""
sign rotated50 "${A[@]}" --next-signer "${B[@]}" --lineage lineage-a-b.bin

# Signatures that verify, broken upload rules.
build othersigner "$PKG" 50 24 34 ""
sign othersigner "${C[@]}"
build otherpackage org.example.other 50 24 34 ""
sign otherpackage "${A[@]}"
build debuggable "$PKG" 50 24 34 'android:debuggable="true"'
sign debuggable "${A[@]}"
build testonly "$PKG" 50 24 34 'android:testOnly="true"'
sign testonly "${A[@]}"
build backwards "$PKG" 5 24 34 ""
sign backwards "${A[@]}"

# Signatures that do not verify.
cp "$work/good.unsigned.apk" unsigned.apk
build v1target34 "$PKG" 50 21 34 ""
sign v1target34 "${A[@]}" --v1-signing-enabled true --v2-signing-enabled false --v3-signing-enabled false
cp good.apk tampered.apk
perl -pi -e 's/hello wemesse good/hello wemesse evil/' tampered.apk
cmp -s good.apk tampered.apk && { echo "tampering changed nothing"; exit 1; }
# 20 kB of bytes that are not an APK, the same on every run.
head -c 20480 /dev/zero | openssl enc -aes-128-ctr -nosalt -K 00 -iv 00 -pbkdf2 2>/dev/null > random.bin \
  || python3 -c 'import random,sys; r=random.Random(16); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(20480)))' > random.bin
# The Postman collection uploads these as wemesse.apk, one per version.
for pair in 2264_00:good 2267_01:newer 2268_00:newest 2268_00-arm64:newest-arm64 2269_01:rotated 3000_01:rotated50; do
  mkdir -p "../postman/${pair%%:*}"
  cp "${pair#*:}.apk" "../postman/${pair%%:*}/wemesse.apk"
done
ls -l ./*.apk random.bin
