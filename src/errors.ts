/**
 * Failure types. Activities throw non-retryable `ApplicationFailure`s of these types for what
 * retrying cannot fix; the worker and the workflow name them so tests and operators can match on
 * `failure.type`.
 */
export const FailureType = {
  /** The plan is invalid or does not match the hosts (missing source container, ...). */
  BadPlan: 'BadPlan',
  /** SSH authentication refused. */
  AuthRefused: 'AuthRefused',
  /** The host key does not match known_hosts: nothing runs. */
  HostKeyMismatch: 'HostKeyMismatch',
  /** A destination name is taken by an instance this migration did not create. */
  NameClash: 'NameClash',
  /** Not enough space on the destination for the data. */
  NoSpace: 'NoSpace',
  /** A check of the guide refused to go on (fewer vhosts, no storage block, checksum mismatch). */
  Refused: 'Refused',
  /** A remote command failed; retryable unless a more specific type applies. */
  CommandFailed: 'CommandFailed',
  /**
   * A remote command failed in a way a retry repeats (command missing, file missing, permission
   * denied): the host or the plan needs fixing first.
   */
  CommandCannotSucceed: 'CommandCannotSucceed',
  /** A secret reference could not be resolved by the worker. */
  SecretUnavailable: 'SecretUnavailable',
} as const;

export type FailureTypeName = (typeof FailureType)[keyof typeof FailureType];

/** Types no retry can fix. */
export const NON_RETRYABLE: FailureTypeName[] = [
  FailureType.BadPlan,
  FailureType.AuthRefused,
  FailureType.HostKeyMismatch,
  FailureType.NameClash,
  FailureType.NoSpace,
  FailureType.Refused,
  FailureType.CommandCannotSucceed,
  FailureType.SecretUnavailable,
];
