<?php
/**
 * The [simulcast_player] shortcode and the Simulcast Player block: both render the server's
 * `<simulcast-player>` element (or its `/player` page in an iframe).
 *
 * @package SimulcastPlayer
 */

declare(strict_types=1);

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Registers the shortcode and the block and renders them.
 */
final class Simulcast_Player_Embed {

	/** How long the server's answer about a key is remembered. */
	private const KEY_CHECK_TTL = 300;

	/**
	 * Register the shortcode and the dynamic block (block.json, rendered in PHP).
	 */
	public static function register(): void {
		add_shortcode( 'simulcast_player', array( self::class, 'shortcode' ) );
		register_block_type(
			SIMULCAST_PLAYER_DIR . '/blocks/simulcast-player',
			array( 'render_callback' => array( self::class, 'block' ) )
		);
	}

	/**
	 * `[simulcast_player api_key="pk_..." height="480" autoplay="true" muted="true" tips="true"]`;
	 * attributes left out take the settings page's values.
	 *
	 * @param array<string, string>|string $atts Shortcode attributes.
	 */
	public static function shortcode( $atts ): string {
		$options = Simulcast_Player_Options::get();
		$atts    = shortcode_atts(
			array(
				'api_key'  => $options['api_key'],
				'height'   => $options['height'],
				'autoplay' => $options['autoplay'] ? 'true' : 'false',
				'muted'    => $options['muted'] ? 'true' : 'false',
				'tips'     => $options['tips'] ? 'true' : 'false',
			),
			is_array( $atts ) ? $atts : array(),
			'simulcast_player'
		);
		return self::render( $atts );
	}

	/**
	 * The block's server-side render: its attributes are the shortcode's.
	 *
	 * @param array<string, mixed> $attributes Block attributes.
	 */
	public static function block( array $attributes ): string {
		$options = Simulcast_Player_Options::get();
		$key     = isset( $attributes['apiKey'] ) && '' !== $attributes['apiKey'] ? $attributes['apiKey'] : $options['api_key'];
		return self::render(
			array(
				'api_key'  => (string) $key,
				'height'   => $attributes['height'] ?? $options['height'],
				'autoplay' => $attributes['autoplay'] ?? $options['autoplay'],
				'muted'    => $attributes['muted'] ?? $options['muted'],
				'tips'     => $attributes['tips'] ?? $options['tips'],
			)
		);
	}

	/**
	 * The player's markup, or for an unusable key a notice that only editors see.
	 *
	 * @param array<string, mixed> $atts Cleaned attributes.
	 */
	public static function render( array $atts ): string {
		$options = Simulcast_Player_Options::get();
		$server  = Simulcast_Player_Options::clean_url( (string) $options['server_url'] );
		$key     = trim( (string) $atts['api_key'] );
		if ( '' === $server ) {
			return self::notice( __( 'Simulcast Player: set the server URL under Settings → Simulcast Player.', 'simulcast-player' ) );
		}
		if ( ! Simulcast_Player_Options::is_public_key( $key ) ) {
			return self::notice( __( 'Simulcast Player: the api_key is not a public pk_ key of a self-hosted destination.', 'simulcast-player' ) );
		}
		if ( self::server_refuses( $server, $key ) ) {
			return self::notice( __( 'Simulcast Player: the server does not accept this api_key (revoked, rotated or of a disabled destination).', 'simulcast-player' ) );
		}

		$height   = absint( $atts['height'] );
		$autoplay = Simulcast_Player_Options::flag( $atts['autoplay'] );
		$muted    = Simulcast_Player_Options::flag( $atts['muted'] );
		$tips     = Simulcast_Player_Options::flag( $atts['tips'] );
		$query    = array( 'apiKey' => $key );
		foreach ( array( 'autoplay' => $autoplay, 'muted' => $muted, 'tips' => $tips ) as $name => $on ) {
			if ( ! $on ) {
				$query[ $name ] = '0';
			}
		}
		$frame_url = add_query_arg( array_map( 'rawurlencode', $query ), $server . '/player' );
		$iframe    = sprintf(
			'<iframe class="simulcast-player-frame" src="%1$s" title="%2$s" style="width:100%%;border:0;%3$s" allow="autoplay; fullscreen; clipboard-write" allowfullscreen loading="lazy"></iframe>',
			esc_url( $frame_url ),
			esc_attr__( 'Live stream', 'simulcast-player' ),
			esc_attr( $height > 0 ? "height:{$height}px" : 'aspect-ratio:16/9' )
		);
		if ( 'iframe' === $options['mode'] ) {
			return '<div class="simulcast-player">' . $iframe . '</div>';
		}

		// The server's own script; null version: the server sets its cache lifetime.
		wp_enqueue_script( 'simulcast-player-element', $server . '/player.js', array(), null, true ); // phpcs:ignore WordPress.WP.EnqueuedResourceParameters.MissingVersion
		$attributes = sprintf( ' api-key="%s"', esc_attr( $key ) );
		if ( $height > 0 ) {
			$attributes .= sprintf( ' height="%d"', $height );
		}
		foreach ( array( 'autoplay' => $autoplay, 'muted' => $muted, 'tips' => $tips ) as $name => $on ) {
			$attributes .= sprintf( ' %s="%s"', $name, $on ? 'true' : 'false' );
		}
		return '<div class="simulcast-player"><simulcast-player' . $attributes . '></simulcast-player>'
			. '<noscript>' . $iframe . '</noscript></div>';
	}

	/**
	 * A notice for people who can edit the page; nothing for visitors.
	 *
	 * @param string $message Plain text.
	 */
	private static function notice( string $message ): string {
		if ( ! current_user_can( 'edit_posts' ) ) {
			return '';
		}
		return '<div class="simulcast-player-notice" role="alert" style="border-left:4px solid #d63638;padding:.5em 1em;background:#fcf0f1">'
			. esc_html( $message ) . '</div>';
	}

	/**
	 * Whether the server answers 401 for the key (cached for a few minutes). A server that cannot
	 * be reached is not taken as a refusal: the player shows its own offline card then.
	 *
	 * @param string $server Base URL.
	 * @param string $key    The pk_ key.
	 */
	private static function server_refuses( string $server, string $key ): bool {
		$cache  = 'simulcast_player_key_' . md5( $server . '|' . $key );
		$status = get_transient( $cache );
		if ( false === $status ) {
			$response = wp_remote_get(
				add_query_arg( 'apiKey', rawurlencode( $key ), $server . '/api/public/stream/status' ),
				array(
					'timeout' => 5,
					'headers' => array( 'Accept' => 'application/json' ),
				)
			);
			$status = is_wp_error( $response ) ? 0 : (int) wp_remote_retrieve_response_code( $response );
			set_transient( $cache, $status, self::KEY_CHECK_TTL );
		}
		return 401 === (int) $status;
	}
}
