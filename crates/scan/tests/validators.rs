//! Each validator against published examples and wrong-check-digit look-alikes.
use portcullis_scan::validate::{self, Validator};

fn ok(v: Validator, s: &str) -> bool {
    v.check(s.as_bytes()).is_some()
}

#[test]
fn luhn_and_issuer_ranges() {
    // Published test PANs (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay).
    for pan in [
        "4111111111111111", "4012888888881881", "4222222222222", "5555555555554444", "5105105105105100", "2223003122003222",
        "378282246310005", "371449635398431", "6011111111111117", "6011000990139424", "3530111333300000", "3566002020360505",
        "30569309025904", "38520000023237", "6200000000000005", "4111-1111-1111-1111", "4111 1111 1111 1111",
    ] {
        assert!(ok(Validator::PaymentCard, pan), "{pan}");
    }
    // One digit changed: Luhn fails.
    for pan in ["4111111111111112", "5555555555554445", "378282246310006", "6011111111111118"] {
        assert!(!ok(Validator::PaymentCard, pan), "{pan}");
    }
    // Luhn-valid but no issuer uses that prefix/length.
    assert!(validate::luhn(b"1234567890123452"));
    assert!(!ok(Validator::PaymentCard, "1234567890123452"));
    assert!(!ok(Validator::PaymentCard, "9999123456789019"));
    // Visa is 13/16/19 long, not 15; Amex is 15, not 16.
    assert!(!ok(Validator::PaymentCard, "411111111111116"));
    assert!(!ok(Validator::PaymentCard, "3782822463100051"));
    // A card followed by a short group: the card prefix is accepted.
    assert_eq!(Validator::PaymentCard.check(b"4111 1111 1111 1111 12"), Some(19));
}

#[test]
fn hkid_check_digit() {
    // A123456(3) is the Immigration Department's own example; the others are computed by hand:
    // G123456: 9*36 + 8*16 + (7*1+6*2+5*3+4*4+3*5+2*6) = 529, 529 mod 11 = 1, 11-1 = 10 -> A.
    for id in ["A123456(3)", "A1234563", "A123456 (3)", "G123456(A)", "AB987654(3)", "XA000001(6)", "Z683365(A)", "C668668(9)"] {
        assert!(ok(Validator::Hkid, id), "{id}");
    }
    for id in ["A123456(4)", "A123456(0)", "G123456(1)", "AB987654(2)", "XA000001(5)", "A12345(3)", "ABC123456(3)", "a123456(3)"] {
        assert!(!ok(Validator::Hkid, id), "{id}");
    }
}

#[test]
fn prc_resident_id() {
    // 11010519491231002X is the example of GB 11643-1999; 440524188001010014 a commonly cited one.
    for id in ["11010519491231002X", "11010519491231002x", "440524188001010014", "310115200002291235"] {
        assert!(ok(Validator::CnResidentId, id), "{id}");
    }
    assert_eq!(validate::iso7064_mod11_2(b"11010519491231002"), Some(b'X'));
    for id in [
        "110105194912310021", // wrong check character
        "110105194912310029", "110105194902300020", // 30 February (check character correct for the digits)
        "310115200102291232", // 29 February in a non-leap year
        "990105194912310023", // no province 99
        "110105170012310028", // born 1700
    ] {
        assert!(!ok(Validator::CnResidentId, id), "{id}");
    }
}

#[test]
fn iban_length_and_mod97() {
    // Examples from the SWIFT IBAN registry / national banks.
    for iban in [
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "CH9300762011623852957",
    ] {
        assert!(ok(Validator::Iban, iban), "{iban}");
    }
    for iban in [
        "GB82WEST12345698765433", // check fails
        "GB28WEST12345698765432", // swapped check digits
        "GB82WEST1234569876543",  // GB is 22 long
        "ZZ82WEST12345698765432", // no such country
        "DE89370400440532013001",
    ] {
        assert!(!ok(Validator::Iban, iban), "{iban}");
    }
    // A following uppercase word is cut off at the country length.
    assert_eq!(Validator::Iban.check(b"BE68 5390 0754 7034 FROM"), Some(19));
}

#[test]
fn us_ssn_rules() {
    for ssn in ["536-22-8726", "123-45-6789", "001-01-0001", "899-99-9999"] {
        assert!(ok(Validator::UsSsn, ssn), "{ssn}");
    }
    for ssn in ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000", "123456789", "12-345-6789"] {
        assert!(!ok(Validator::UsSsn, ssn), "{ssn}");
    }
}

#[test]
fn aws_access_key_shape() {
    assert!(ok(Validator::AwsAccessKey, "AKIAIOSFODNN7EXAMPLE")); // AWS docs (excluded by the rule, not the validator)
    assert!(ok(Validator::AwsAccessKey, "ASIAY34FZKBOKMUTVV7A"));
    assert!(!ok(Validator::AwsAccessKey, "AKIAAAAAAAAAAAAAAAAA"));
    assert!(!ok(Validator::AwsAccessKey, "AKIA0000111188889999"));
    assert!(!ok(Validator::AwsAccessKey, "AKIAIOSFODNN7EXAMPL"));
}

#[test]
fn github_crc32_checksum() {
    // CRC-32/ISO-HDLC check value of "123456789".
    assert_eq!(validate::crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(&validate::base62_6(0), b"000000");
    assert_eq!(&validate::base62_6(u32::MAX), b"4gfFC3");
    // Generated with Python's zlib.crc32 (an independent implementation).
    for t in
        ["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", "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", "ghs_CN6Zj4a3dDVhYRnKTbxTNJFoBinF5a42GyMy"]
    {
        assert!(ok(Validator::GithubToken, t), "{t}");
    }
    for t in [
        "ghp_Ky9Pf34qY6Nb3wWD25RQ4F5ZR3qa7y3gm1IM", // last character changed
        "ghp_Ly9Pf34qY6Nb3wWD25RQ4F5ZR3qa7y3gm1IL", // body changed
        "gho_16C7e42F292c6912E7710c838347Ae178B4a", // GitHub docs' placeholder: no valid checksum
        "ghx_Ky9Pf34qY6Nb3wWD25RQ4F5ZR3qa7y3gm1IL",
    ] {
        assert!(!ok(Validator::GithubToken, t), "{t}");
    }
    // Fine-grained personal access tokens: the prefix and 82 word characters, nothing else.
    let pat = "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";
    assert!(ok(Validator::GithubToken, pat));
    assert!(!ok(Validator::GithubToken, &pat[..92]), "one short");
    assert!(!ok(Validator::GithubToken, &format!("{pat}A")), "one long");
    assert!(!ok(Validator::GithubToken, &pat.replace("github_pat_", "github_pot_")));
    assert!(!ok(Validator::GithubToken, &format!("{}-{}", &pat[..50], &pat[51..])), "a dash inside");
}

#[test]
fn validator_names_round_trip() {
    for (name, v) in Validator::ALL {
        assert_eq!(Validator::from_name(name), Some(v));
        assert_eq!(v.name(), name);
    }
    assert_eq!(Validator::from_name("nope"), None);
}
