package ikev2

import "fmt"

// NotifyType is the type of a Notify payload (RFC 7296 §3.10.1): below
// 16384 an error, from 16384 on a status.
type NotifyType uint16

// NotifyNone is no notification: on a DecodeError it means the message is
// to be dropped without an answer (there is no header to answer to).
const NotifyNone NotifyType = 0

// Error types.
const (
	NotifyUnsupportedCriticalPayload NotifyType = 1
	NotifyInvalidIKESPI              NotifyType = 4
	NotifyInvalidMajorVersion        NotifyType = 5
	NotifyInvalidSyntax              NotifyType = 7
	NotifyInvalidMessageID           NotifyType = 9
	NotifyInvalidSPI                 NotifyType = 11
	NotifyNoProposalChosen           NotifyType = 14
	NotifyInvalidKEPayload           NotifyType = 17 // data: the accepted DH group, 2 octets
	NotifyAuthenticationFailed       NotifyType = 24
	NotifySinglePairRequired         NotifyType = 34
	NotifyNoAdditionalSAs            NotifyType = 35
	NotifyInternalAddressFailure     NotifyType = 36
	NotifyFailedCPRequired           NotifyType = 37
	NotifyTSUnacceptable             NotifyType = 38
	NotifyInvalidSelectors           NotifyType = 39
	NotifyUnacceptableAddresses      NotifyType = 40 // RFC 4555
	NotifyUnexpectedNATDetected      NotifyType = 41 // RFC 4555
	NotifyTemporaryFailure           NotifyType = 43
	NotifyChildSANotFound            NotifyType = 44
)

// Status types.
const (
	NotifyInitialContact                NotifyType = 16384
	NotifySetWindowSize                 NotifyType = 16385
	NotifyAdditionalTSPossible          NotifyType = 16386
	NotifyIPCompSupported               NotifyType = 16387
	NotifyNATDetectionSourceIP          NotifyType = 16388 // data: SHA-1(SPIi | SPIr | IP | port)
	NotifyNATDetectionDestinationIP     NotifyType = 16389
	NotifyCookie                        NotifyType = 16390 // data: 1 to 64 octets
	NotifyUseTransportMode              NotifyType = 16391
	NotifyHTTPCertLookupSupported       NotifyType = 16392
	NotifyRekeySA                       NotifyType = 16393 // SPI: the Child SA being rekeyed
	NotifyESPTFCPaddingNotSupported     NotifyType = 16394
	NotifyNonFirstFragmentsAlso         NotifyType = 16395
	NotifyMOBIKESupported               NotifyType = 16396 // RFC 4555
	NotifyMultipleAuthSupported         NotifyType = 16404 // RFC 4739
	NotifyAnotherAuthFollows            NotifyType = 16405 // RFC 4739
	NotifyRedirectSupported             NotifyType = 16406 // RFC 5685
	NotifyRedirect                      NotifyType = 16407 // RFC 5685
	NotifyRedirectedFrom                NotifyType = 16408 // RFC 5685
	NotifyChildlessIKEv2Supported       NotifyType = 16418 // RFC 6023
	NotifyIKEv2FragmentationSupported   NotifyType = 16430 // RFC 7383
	NotifySignatureHashAlgorithms       NotifyType = 16431 // RFC 7427
	NotifyIntermediateExchangeSupported NotifyType = 16438 // RFC 9242
)

// notifyNames are IANA's names, which TShark prints too.
var notifyNames = map[NotifyType]string{
	NotifyUnsupportedCriticalPayload: "UNSUPPORTED_CRITICAL_PAYLOAD",
	NotifyInvalidIKESPI:              "INVALID_IKE_SPI",
	NotifyInvalidMajorVersion:        "INVALID_MAJOR_VERSION",
	NotifyInvalidSyntax:              "INVALID_SYNTAX",
	NotifyInvalidMessageID:           "INVALID_MESSAGE_ID",
	NotifyInvalidSPI:                 "INVALID_SPI",
	NotifyNoProposalChosen:           "NO_PROPOSAL_CHOSEN",
	NotifyInvalidKEPayload:           "INVALID_KE_PAYLOAD",
	NotifyAuthenticationFailed:       "AUTHENTICATION_FAILED",
	NotifySinglePairRequired:         "SINGLE_PAIR_REQUIRED",
	NotifyNoAdditionalSAs:            "NO_ADDITIONAL_SAS",
	NotifyInternalAddressFailure:     "INTERNAL_ADDRESS_FAILURE",
	NotifyFailedCPRequired:           "FAILED_CP_REQUIRED",
	NotifyTSUnacceptable:             "TS_UNACCEPTABLE",
	NotifyInvalidSelectors:           "INVALID_SELECTORS",
	NotifyUnacceptableAddresses:      "UNACCEPTABLE_ADDRESSES",
	NotifyUnexpectedNATDetected:      "UNEXPECTED_NAT_DETECTED",
	42:                               "USE_ASSIGNED_HoA",
	NotifyTemporaryFailure:           "TEMPORARY_FAILURE",
	NotifyChildSANotFound:            "CHILD_SA_NOT_FOUND",

	NotifyInitialContact:                "INITIAL_CONTACT",
	NotifySetWindowSize:                 "SET_WINDOW_SIZE",
	NotifyAdditionalTSPossible:          "ADDITIONAL_TS_POSSIBLE",
	NotifyIPCompSupported:               "IPCOMP_SUPPORTED",
	NotifyNATDetectionSourceIP:          "NAT_DETECTION_SOURCE_IP",
	NotifyNATDetectionDestinationIP:     "NAT_DETECTION_DESTINATION_IP",
	NotifyCookie:                        "COOKIE",
	NotifyUseTransportMode:              "USE_TRANSPORT_MODE",
	NotifyHTTPCertLookupSupported:       "HTTP_CERT_LOOKUP_SUPPORTED",
	NotifyRekeySA:                       "REKEY_SA",
	NotifyESPTFCPaddingNotSupported:     "ESP_TFC_PADDING_NOT_SUPPORTED",
	NotifyNonFirstFragmentsAlso:         "NON_FIRST_FRAGMENTS_ALSO",
	NotifyMOBIKESupported:               "MOBIKE_SUPPORTED",
	16397:                               "ADDITIONAL_IP4_ADDRESS",
	16398:                               "ADDITIONAL_IP6_ADDRESS",
	16399:                               "NO_ADDITIONAL_ADDRESSES",
	16400:                               "UPDATE_SA_ADDRESSES",
	16401:                               "COOKIE2",
	16402:                               "NO_NATS_ALLOWED",
	16403:                               "AUTH_LIFETIME",
	NotifyMultipleAuthSupported:         "MULTIPLE_AUTH_SUPPORTED",
	NotifyAnotherAuthFollows:            "ANOTHER_AUTH_FOLLOWS",
	NotifyRedirectSupported:             "REDIRECT_SUPPORTED",
	NotifyRedirect:                      "REDIRECT",
	NotifyRedirectedFrom:                "REDIRECTED_FROM",
	16409:                               "TICKET_LT_OPAQUE",
	16410:                               "TICKET_REQUEST",
	16411:                               "TICKET_ACK",
	16412:                               "TICKET_NACK",
	16413:                               "TICKET_OPAQUE",
	16414:                               "LINK_ID",
	16415:                               "USE_WESP_MODE",
	16416:                               "ROHC_SUPPORTED",
	16417:                               "EAP_ONLY_AUTHENTICATION",
	NotifyChildlessIKEv2Supported:       "CHILDLESS_IKEV2_SUPPORTED",
	16419:                               "QUICK_CRASH_DETECTION",
	16420:                               "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
	16421:                               "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
	16422:                               "IKEV2_MESSAGE_ID_SYNC",
	16423:                               "IPSEC_REPLAY_COUNTER_SYNC",
	16424:                               "SECURE_PASSWORD_METHODS",
	16425:                               "PSK_PERSIST",
	16426:                               "PSK_CONFIRM",
	16427:                               "ERX_SUPPORTED",
	16428:                               "IFOM_CAPABILITY",
	16429:                               "SENDER_REQUEST_ID",
	NotifyIKEv2FragmentationSupported:   "IKEV2_FRAGMENTATION_SUPPORTED",
	NotifySignatureHashAlgorithms:       "SIGNATURE_HASH_ALGORITHMS",
	16432:                               "CLONE_IKE_SA_SUPPORTED",
	16433:                               "CLONE_IKE_SA",
	16434:                               "PUZZLE",
	16435:                               "USE_PPK",
	16436:                               "PPK_IDENTITY",
	16437:                               "NO_PPK_AUTH",
	NotifyIntermediateExchangeSupported: "INTERMEDIATE_EXCHANGE_SUPPORTED",
}

func (t NotifyType) String() string {
	if s, ok := notifyNames[t]; ok {
		return s
	}
	if t == NotifyNone {
		return "NONE"
	}
	if t.IsError() {
		return fmt.Sprintf("error notify %d", uint16(t))
	}
	return fmt.Sprintf("status notify %d", uint16(t))
}

// IsError reports whether t is an error type (1 to 16383): an unknown error
// type in a response means the request failed (§3.10.1).
func (t NotifyType) IsError() bool { return t > 0 && t < 16384 }
