<?php
/**
 * Settings → Simulcast Player: server URL, public key and player defaults.
 *
 * The form posts to options.php through the Settings API, which checks the `manage_options`
 * capability and the nonce that settings_fields() prints.
 *
 * @package SimulcastPlayer
 */

declare(strict_types=1);

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The settings page and the sanitizing of its values.
 */
final class Simulcast_Player_Settings_Page {

	private const PAGE  = 'simulcast-player';
	private const GROUP = 'simulcast_player';

	/**
	 * Add the page under Settings (administrators only).
	 */
	public static function add_menu(): void {
		add_options_page(
			__( 'Simulcast Player', 'simulcast-player' ),
			__( 'Simulcast Player', 'simulcast-player' ),
			'manage_options',
			self::PAGE,
			array( self::class, 'render' )
		);
	}

	/**
	 * A "Settings" link on the Plugins screen.
	 *
	 * @param array<int|string, string> $links Existing links.
	 * @return array<int|string, string>
	 */
	public static function action_links( array $links ): array {
		$url = admin_url( 'options-general.php?page=' . self::PAGE );
		array_unshift( $links, '<a href="' . esc_url( $url ) . '">' . esc_html__( 'Settings', 'simulcast-player' ) . '</a>' );
		return $links;
	}

	/**
	 * Register the option, its section and fields.
	 */
	public static function register(): void {
		register_setting(
			self::GROUP,
			Simulcast_Player_Options::NAME,
			array(
				'type'              => 'array',
				'sanitize_callback' => array( self::class, 'sanitize' ),
				'default'           => Simulcast_Player_Options::defaults(),
			)
		);
		add_settings_section( 'simulcast_player_main', __( 'Stream', 'simulcast-player' ), '__return_false', self::PAGE );
		$fields = array(
			'server_url' => __( 'Server base URL', 'simulcast-player' ),
			'api_key'    => __( 'Public key (pk_)', 'simulcast-player' ),
			'height'     => __( 'Height (px, 0 = 16:9)', 'simulcast-player' ),
			'autoplay'   => __( 'Autoplay', 'simulcast-player' ),
			'muted'      => __( 'Start muted', 'simulcast-player' ),
			'tips'       => __( 'Show "Support the stream"', 'simulcast-player' ),
			'mode'       => __( 'Embed as', 'simulcast-player' ),
		);
		foreach ( $fields as $name => $label ) {
			add_settings_field(
				'simulcast_player_' . $name,
				$label,
				array( self::class, 'field' ),
				self::PAGE,
				'simulcast_player_main',
				array(
					'name'      => $name,
					'label_for' => 'simulcast_player_' . $name,
				)
			);
		}
	}

	/**
	 * Clean submitted values; refuse anything but a public key (an `sk_` secret would reach
	 * every visitor's page).
	 *
	 * @param mixed $input Submitted values.
	 * @return array<string, mixed>
	 */
	public static function sanitize( mixed $input ): array {
		$old   = Simulcast_Player_Options::get();
		$input = is_array( $input ) ? wp_unslash( $input ) : array();
		$clean = Simulcast_Player_Options::defaults();

		$url = Simulcast_Player_Options::clean_url( sanitize_text_field( (string) ( $input['server_url'] ?? '' ) ) );
		if ( '' === $url && '' !== trim( (string) ( $input['server_url'] ?? '' ) ) ) {
			add_settings_error( Simulcast_Player_Options::NAME, 'server_url', __( 'The server URL must start with http:// or https://.', 'simulcast-player' ) );
			$url = (string) $old['server_url'];
		}
		$clean['server_url'] = $url;

		$key = trim( sanitize_text_field( (string) ( $input['api_key'] ?? '' ) ) );
		if ( '' !== $key && ! Simulcast_Player_Options::is_public_key( $key ) ) {
			add_settings_error( Simulcast_Player_Options::NAME, 'api_key', __( 'Use the public pk_ key of a self-hosted destination, never an sk_ key.', 'simulcast-player' ) );
			$key = (string) $old['api_key'];
		}
		$clean['api_key'] = $key;

		$clean['height'] = min( 4000, absint( $input['height'] ?? 0 ) );
		foreach ( array( 'autoplay', 'muted', 'tips' ) as $flag ) {
			$clean[ $flag ] = ! empty( $input[ $flag ] );
		}
		$clean['mode'] = ( 'iframe' === ( $input['mode'] ?? '' ) ) ? 'iframe' : 'element';
		return $clean;
	}

	/**
	 * One field of the form.
	 *
	 * @param array{name: string, label_for: string} $args Field arguments.
	 */
	public static function field( array $args ): void {
		$options = Simulcast_Player_Options::get();
		$name    = $args['name'];
		$id      = $args['label_for'];
		$field   = Simulcast_Player_Options::NAME . '[' . $name . ']';
		switch ( $name ) {
			case 'autoplay':
			case 'muted':
			case 'tips':
				printf(
					'<input type="checkbox" id="%1$s" name="%2$s" value="1" %3$s>',
					esc_attr( $id ),
					esc_attr( $field ),
					checked( (bool) $options[ $name ], true, false )
				);
				break;
			case 'mode':
				printf( '<select id="%1$s" name="%2$s">', esc_attr( $id ), esc_attr( $field ) );
				foreach (
					array(
						'element' => __( 'The <simulcast-player> tag (player.js)', 'simulcast-player' ),
						'iframe'  => __( 'An iframe (where scripts are restricted)', 'simulcast-player' ),
					) as $value => $label
				) {
					printf( '<option value="%1$s" %2$s>%3$s</option>', esc_attr( $value ), selected( $options['mode'], $value, false ), esc_html( $label ) );
				}
				echo '</select>';
				break;
			case 'height':
				printf(
					'<input type="number" min="0" max="4000" id="%1$s" name="%2$s" value="%3$d">',
					esc_attr( $id ),
					esc_attr( $field ),
					absint( $options['height'] )
				);
				break;
			default:
				printf(
					'<input type="%1$s" class="regular-text" id="%2$s" name="%3$s" value="%4$s" %5$s>',
					'server_url' === $name ? 'url' : 'text',
					esc_attr( $id ),
					esc_attr( $field ),
					esc_attr( (string) $options[ $name ] ),
					'server_url' === $name ? 'placeholder="https://stream.example.com"' : 'placeholder="pk_..." autocomplete="off"'
				);
		}
	}

	/**
	 * The page.
	 */
	public static function render(): void {
		if ( ! current_user_can( 'manage_options' ) ) {
			return;
		}
		echo '<div class="wrap"><h1>' . esc_html( get_admin_page_title() ) . '</h1>';
		echo '<p>' . esc_html__( 'Put [simulcast_player] on a page (or add the Simulcast Player block). Shortcode attributes override these values: api_key, height, autoplay, muted, tips.', 'simulcast-player' ) . '</p>';
		echo '<form action="options.php" method="post">';
		settings_fields( self::GROUP );
		do_settings_sections( self::PAGE );
		submit_button();
		echo '</form></div>';
	}
}
